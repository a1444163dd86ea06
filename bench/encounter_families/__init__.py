"""The encounter bench's families of documents, each rendered by a system other than our own
layout code (see ``common.py`` for what a family module provides)."""
