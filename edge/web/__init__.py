"""The operator's page: the daemon seen and steered from a browser (``web.*`` settings, off by default).

:mod:`edge.web.server` is the HTTP adapter over the daemon's control commands and events;
:mod:`edge.web.live` draws the live view; ``static/`` holds the page (plain HTML, JS and CSS,
served from memory, nothing fetched from elsewhere). See docs/web.md.
"""
