"""The bench's peer: django-hordak, run in its own worker processes on its own database.

Its packages live in ``.venv/bench-peer`` (``make bench`` installs them there from
``bench/peer/requirements.txt``), put on ``PYTHONPATH`` for the peer's processes only, with
``DJANGO_SETTINGS_MODULE=bench.peer.settings``. The project's processes never import it.
"""
