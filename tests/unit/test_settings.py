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
