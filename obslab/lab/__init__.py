"""The native runtime: the lab as local processes on 127.0.0.1, without Docker."""
