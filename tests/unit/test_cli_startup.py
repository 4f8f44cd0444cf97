"""Every component starts as `obslab serve NAME`: that command must not pay for the others."""

from __future__ import annotations

import subprocess
import sys

import pytest

from obslab.cli import SUBCOMMANDS, build_parser, chosen_subcommand

HEAVY = ("pandas", "numpy", "sklearn", "matplotlib", "obslab.rules", "obslab.generators", "obslab.ml")


@pytest.mark.parametrize("component", ["accounts", "gateway", "trace-sink", "alert-receiver", "fault-injector"])
def test_a_component_process_imports_no_analysis_library_nor_the_other_commands(component):
    probe = (
        "import sys\n"
        "from obslab.cli import build_parser, chosen_subcommand\n"
        f"argv = ['serve', '{component}']\n"
        "build_parser(only=chosen_subcommand(argv)).parse_args(argv)\n"
        "from obslab.platform import serving\n"
        f"serving.factory('{component}')\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_the_subcommand_is_the_first_word_that_is_not_an_option():
    assert chosen_subcommand(["serve", "accounts"]) == "serve"
    assert chosen_subcommand(["--version"]) is None
    assert chosen_subcommand(["status", "--json"]) == "status"
    assert chosen_subcommand(["bogus"]) is None       # the whole parser says what the choices are


@pytest.mark.parametrize("argv", [["serve", "accounts", "--port", "9000"], ["status", "--json"],
                                  ["bench", "lab", "--minutes", "1"], ["up", "--detach", "--profile", "fast"]])
def test_a_parser_of_one_subcommand_parses_like_the_whole_one(argv):
    whole, alone = build_parser().parse_args(argv), build_parser(only=chosen_subcommand(argv)).parse_args(argv)
    assert vars(whole) == vars(alone)
