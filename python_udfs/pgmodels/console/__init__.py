"""The console: pgmodels' records as web pages (projects and versions, batch runs,
streams, drift), served read-only by ``pgmodels serve`` under /console as the viewer's
role. routes.py has the pages, data.py the one statement each page runs, charts.py the
SVG charts, templates/ the HTML."""
