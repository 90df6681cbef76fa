"""The live web dashboard (`prodmon dashboard serve`, docs/dashboard.md).

- state.py    the materialized view: a pure, bounded class fed topic records
- feed.py     restores the view from topic history, then tails the topics; change broadcaster
- charts.py   server-side SVG charts
- render.py   HTML pages (every string from an event is escaped)
- security.py loopback Host check, token sessions, CSRF, security headers
- assets.py   the stylesheet and the small script (SSE + fragment refresh)
- app.py      the aiohttp routes, the SSE stream, the actions, and `serve`
"""
