import re
from pathlib import Path

import pytest

from obslab import settings
from obslab.platform.db import resolve_url


def test_service_urls_default_to_loopback_ports_plus_offset(monkeypatch):
    monkeypatch.setenv("OBSLAB_PORT_OFFSET", "1000")
    assert settings.service_url("accounts") == "http://127.0.0.1:9082"
    monkeypatch.setenv("OBSLAB_ACCOUNTS_URL", "http://accounts:8082/")
    assert settings.service_url("accounts") == "http://accounts:8082"


@pytest.mark.parametrize("value", ["ten", "-1", "60000"])
def test_a_bad_port_offset_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("OBSLAB_PORT_OFFSET", value)
    with pytest.raises(settings.ConfigError, match="OBSLAB_PORT_OFFSET"):
        settings.port_offset()


def test_the_data_dir_argument_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OBSLAB_DATA_DIR", str(tmp_path / "env"))
    assert settings.data_dir() == tmp_path / "env"
    assert settings.data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_database_urls_resolve_service_override_then_server_then_sqlite(monkeypatch, tmp_path):
    monkeypatch.setenv("OBSLAB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OBSLAB_DB_URL", raising=False)
    assert resolve_url("accounts").render_as_string() == f"sqlite:///{tmp_path}/db/accounts.sqlite3"

    monkeypatch.setenv("OBSLAB_DB_URL", "mysql://bank:pw@db:3306/")
    url = resolve_url("accounts")
    assert (url.drivername, url.host, url.database) == ("mysql+pymysql", "db", "obslab_accounts")

    monkeypatch.setenv("OBSLAB_DB_URL", "mysql://bank:pw@db:3306/lab")
    assert resolve_url("trace-sink").database == "lab_trace_sink"

    monkeypatch.setenv("OBSLAB_ACCOUNTS_DB_URL", "sqlite:////tmp/elsewhere.db")
    assert resolve_url("accounts").database == "/tmp/elsewhere.db"
    assert resolve_url("accounts", "sqlite:///explicit.db").database == "explicit.db"


def test_a_non_mysql_server_url_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("OBSLAB_DB_URL", "postgresql://db/")
    with pytest.raises(settings.ConfigError, match="OBSLAB_ACCOUNTS_DB_URL"):
        resolve_url("accounts")


# --- the declarations (every OBSLAB_* variable once, in settings.SETTINGS) -----------------------

SOURCE_FOLDERS = ("obslab", "services", "ml", "iis-mock")
# A name, or a family of them written with a star (``OBSLAB_LOAD_*``).
_NAMED = re.compile(r"OBSLAB_[A-Z0-9_]+(\*)?")


def test_every_obslab_variable_the_code_names_is_declared():
    undeclared = []
    root = settings.repo_root()
    for folder in SOURCE_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for match in _NAMED.finditer(line):
                    name = match.group(0)
                    if match.group(1):   # a family: some declared name must start with it
                        known = any(s.name.startswith(name[:-1]) for s in settings.SETTINGS)
                    else:
                        known = settings.declaration(name) is not None
                    if not known:
                        undeclared.append(f"{path.relative_to(root)}:{number}: {name}")
    assert not undeclared, "declare these in obslab/settings.py (SETTINGS):\n" + "\n".join(undeclared)


def test_declarations_are_unique_documented_and_their_defaults_fit_them():
    names = [s.name for s in settings.SETTINGS]
    assert len(names) == len(set(names))
    types = {"int": int, "float": float, "bool": bool, "str": str, "url": str, "path": str}
    for setting in settings.SETTINGS:
        assert setting.doc and "\n" not in setting.doc, setting.name
        if setting.default is None:
            continue
        assert type(setting.default) is types[setting.kind], setting.name
        if setting.minimum is not None:
            assert setting.default >= setting.minimum, setting.name
        if setting.maximum is not None:
            assert setting.default <= setting.maximum, setting.name


def test_declared_names_resolve_patterns_only_for_the_labs_components():
    assert settings.declaration("OBSLAB_THREADS") is settings.THREADS
    assert settings.declaration("OBSLAB_TRACE_SINK_URL").name == "OBSLAB_TRACE_SINK_URL"
    assert settings.declaration("OBSLAB_ALERT_RECEIVER_DB_URL").doc == settings.SERVICE_DB_URL.doc
    assert settings.declaration("OBSLAB_NOBODY_URL") is None
    assert settings.declaration("OBSLAB_THREAD") is None
    assert settings.SERVICE_URL.of("fault-injector").name == settings.FAULT_INJECTOR_URL.name


def test_defaults_owned_elsewhere_agree_with_the_declarations():
    from obslab.profiles import PROFILES, PRODUCTION
    from obslab.services.common import tokens

    assert settings.PROFILE.default == PRODUCTION.name and settings.PROFILE.default in PROFILES
    assert (settings.TOKEN_TTL_SECONDS.minimum, settings.TOKEN_TTL_SECONDS.maximum) == (
        tokens.MIN_TOKEN_SECONDS, tokens.MAX_TOKEN_SECONDS)


@pytest.mark.parametrize("setting, value, message", [
    (settings.THREADS, "0", "OBSLAB_THREADS must be between 1 and 256, got 0"),
    (settings.THREADS, "many", "OBSLAB_THREADS must be an integer, got 'many'"),
    (settings.RECEIVER_MAX_NOTIFICATIONS, "0", "OBSLAB_RECEIVER_MAX_NOTIFICATIONS must be >= 1, got 0"),
    (settings.TRACE_MAX_INFLATED_BYTES, "1024", "OBSLAB_TRACE_MAX_INFLATED_BYTES must be >= 1048576, got 1024"),
    (settings.TOKEN_TTL_SECONDS, "3601", "OBSLAB_TOKEN_TTL_SECONDS must be between 60 and 3600 seconds "
                                         "(the gateway refuses longer-lived tokens), got 3601"),
    (settings.PORT_OFFSET, "60000", f"OBSLAB_PORT_OFFSET must be between 0 and {settings.max_port_offset()} "
                                    "(the lab's ports stay below the kernel's ephemeral range, 32768+), got 60000"),
    (settings.TRACE_RETENTION_HOURS, "0", "OBSLAB_TRACE_RETENTION_HOURS must be >= 0.01, got 0.0"),
    (settings.LOAD_RATE, "-1", "OBSLAB_LOAD_RATE must be >= 0.0, got -1.0"),
    (settings.LOAD_RATE, "nan", "OBSLAB_LOAD_RATE must be a finite number, got 'nan'"),
])
def test_a_declared_number_out_of_bounds_is_the_helpers_config_error(monkeypatch, setting, value, message):
    monkeypatch.setenv(setting.name, value)
    with pytest.raises(settings.ConfigError) as refused:
        setting.get()
    assert str(refused.value) == message
    # The same words as the helpers give for the same bounds.
    helper = settings.int_setting if setting.kind == "int" else settings.float_setting
    with pytest.raises(settings.ConfigError) as again:
        helper(setting.name, setting.default, minimum=setting.minimum, maximum=setting.maximum,
               note=setting.bound_note)
    assert str(again.value) == message


def test_the_environment_wins_over_the_default_and_empty_is_unset(monkeypatch):
    monkeypatch.setenv(settings.THREADS.name, "")
    assert settings.THREADS.get() == 16
    monkeypatch.setenv(settings.THREADS.name, "32")
    assert settings.THREADS.get() == 32 and settings.THREADS.get(default=8) == 32
    monkeypatch.delenv(settings.RATE_LIMIT_BURST.name, raising=False)
    assert settings.RATE_LIMIT_BURST.get(default=7.0) == 7.0   # a default the reader computes
    monkeypatch.setenv(settings.LOAD_FLAT.name, " Yes ")
    assert settings.LOAD_FLAT.get() is True
    monkeypatch.setenv(settings.RUNBOOKS_DIR.name, "~/books")
    assert settings.RUNBOOKS_DIR.get() == Path("~/books").expanduser()


def test_the_settings_reference_lists_every_declaration():
    text = settings.render_markdown()
    assert text.startswith("<!-- GENERATED by `obslab generate` from obslab/settings.py - DO NOT EDIT. -->")
    for setting in settings.SETTINGS:
        assert f"| `{setting.name}` |" in text
    assert settings.DOCS_PATH in settings.generated_files()
