"""``rlar serve``: a local web viewer for a trained model (FastAPI).

- :mod:`.limits`: the server's validated limits (upload size, pixel count, results kept).
- :mod:`.uploads`: checking an upload by content before anything is decoded.
- :mod:`.pages`: the HTML of the form and result pages.
- :mod:`.app`: :func:`create_app`, the FastAPI application.

Needs the ``serve`` extra (``pip install -e '.[serve]'``).
"""
