"""Contracts every Tollgate service agrees on: names, events, config, publishing, migrations."""
