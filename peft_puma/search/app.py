"""``python -m peft_puma.search app --index DIR``: a local web page over a search index (docs/search.md, "The app").

The page (Gradio) takes a query image (upload, drag and drop, paste, or a click on any image it shows), and shows its
``k`` nearest gallery images with score, name and collection: one list over every collection (filtered to one on
request) and one tab per collection; for a query picked from a labelled index, each result is marked right or wrong
and the query's class is named. With a second index (``--compare``, say the frozen backbone's), both models'
neighbours of the same query stand side by side.

:func:`build_app` returns the ``gr.Blocks``, so that the same page runs as a Hub Space's ``app.py``. What each event
does is a method of :class:`~peft_puma.search.app_results.IndexSearch`; this module only wires them to components.
The browser is only ever sent thumbnails the app makes (served from Gradio's own cache): no path of the machine is
allowed (``allowed_paths`` is empty), so a request for any other file, the gallery's originals included, is refused.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from ..errors import InvalidConfigError, InvalidInputError, PUMAError
from .app_results import MAX_K, Hit, IndexSearch, checked_k, open_query_image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # never phone home (set before gradio is imported)
try:
    import gradio as gr
except ImportError:
    raise InvalidConfigError("The search app needs Gradio: pip install 'peft_puma[app]'.") from None

ALL_COLLECTIONS = "All collections"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
PICKS = 24  # gallery images offered as queries below the results
RESULT_COLUMNS = 5
START_MESSAGE = "Drop, paste or upload a query image, or click any image on this page."


def query_image() -> gr.Image:
    """The query image input (upload, drag and drop, paste). A file that is not an image becomes one clear message
    in the page instead of PIL's error: its preprocessing is wrapped on this instance (a subclass of ``gr.Image``
    would be taken by Gradio for a custom component with a frontend of its own)."""
    image = gr.Image(
        label="Query",
        type="pil",
        image_mode="RGB",
        format="png",
        sources=["upload", "clipboard"],
        height=260,
        elem_id="query",
    )
    preprocess = image.preprocess

    def checked(payload: Any) -> Any:
        if payload is None or getattr(payload, "path", None) is None:
            return preprocess(payload)
        if _is_svg(payload):
            raise gr.Error(
                f"{_shown_name(payload)} is not a raster image; upload a JPEG, PNG, GIF, BMP, TIFF or WebP file."
            )
        try:
            return open_query_image(payload.path)
        except InvalidInputError as error:
            raise gr.Error(str(error).replace(os.path.basename(payload.path), _shown_name(payload))) from None

    image.preprocess = checked
    return image


def _is_svg(payload: Any) -> bool:
    return str(payload.orig_name or payload.path).lower().endswith(".svg")


def _shown_name(payload: Any) -> str:
    return os.path.basename(str(payload.orig_name or payload.path))


class _Page:
    """The page's behaviour: each event's function, from component values to component values."""

    def __init__(self, search: IndexSearch, compare: IndexSearch | None) -> None:
        self.search = search
        self.compare = compare

    def gallery_value(self, index: IndexSearch, hits: list[Hit]) -> list[tuple[Any, str]]:
        return [(index.thumbnail_file(hit.row), hit.caption()) for hit in hits]

    def picks(self) -> list[tuple[Any, str]]:
        rows = self.search.sample_rows(PICKS)
        return [(self.search.thumbnail_file(row), self.search.query_label(row)) for row in rows]

    def run(self, image: Any, k: Any, collection: str, state: dict[str, Any]) -> list[Any]:
        """Outputs of one query: message, unified results (and the compared index's), one list per collection, state."""
        row = state.get("row")
        empty = [[] for _ in range(self._num_galleries())]
        if image is None and row is None:
            return [START_MESSAGE, *empty, {"row": None, "shown": {}}]
        try:
            count = checked_k(k, MAX_K)
            query = self.search.row_image(row) if row is not None else image
            where = None if collection in (None, ALL_COLLECTIONS) else collection
            embedding = self.search.embed(query)
            unified = self.search.search(query, count, query_row=row, collection=where, embedding=embedding)
            values = [self.gallery_value(self.search, unified)]
            shown = {"results": [hit.row for hit in unified]}
            if self.compare is not None:
                other_row = self.search.shared_row(self.compare, row)
                other = self.compare.search(query, count, query_row=other_row, collection=_known(self.compare, where))
                values.append(self.gallery_value(self.compare, other))
                shown["compare"] = [hit.row for hit in other]
            per_collection = self.search.search_collections(query, count, query_row=row, embedding=embedding)
            for name in self.search.collections:
                values.append(self.gallery_value(self.search, per_collection[name]))
                shown[name] = [hit.row for hit in per_collection[name]]
        except PUMAError as error:
            raise gr.Error(str(error)) from None
        return [self._message(row, unified, where), *values, {"row": row, "shown": shown}]

    def _message(self, row: int | None, hits: list[Hit], collection: str | None) -> str:
        query = f"Query: gallery row {row}, **{self.search.query_label(row)}**" if row is not None else "Query: upload"
        scope = f" in {collection}" if collection else ""
        if not hits:
            return f"{query}. No other image{scope} to show."
        marked = [hit.match for hit in hits if hit.match is not None]
        right = f"; {sum(marked)} of {len(marked)} of the query's class (✓ right, ✗ wrong)" if marked else ""
        return f"{query}. {len(hits)} nearest{scope}{right}."

    def _num_galleries(self) -> int:
        return 1 + (self.compare is not None) + len(self.search.collections)

    def pick(self, gallery: str, state: dict[str, Any], selected: gr.SelectData) -> tuple[Any, dict[str, Any]]:
        """A click on an image of ``gallery``: its row becomes the query (image shown, row kept for the search)."""
        if gallery == "picks":
            row = self.search.sample_rows(PICKS)[selected.index]
            index = self.search
        else:
            row = state["shown"][gallery][selected.index]
            index = self.compare if gallery == "compare" else self.search
            if index is self.compare:
                row = self.compare.shared_row(self.search, row)
                if row is None:  # another gallery: query with the image itself
                    return self.compare.row_image(state["shown"][gallery][selected.index]), {"row": None}
        return index.row_image(row), {"row": row, "shown": state.get("shown", {})}


def _known(index: IndexSearch, collection: str | None) -> str | None:
    """The collection filter for a compared index: the same collection when it has one of that name, else none."""
    return collection if collection in index.collections else None


def _title(search: IndexSearch, compare: IndexSearch | None) -> str:
    gallery = search.gallery
    source = gallery.get("dataset") or gallery.get("folder")
    where = f"{os.path.basename(str(source))}" + (f" ({gallery['split']})" if gallery.get("split") else "")
    collections = f", {len(search.collections)} collections" if search.collections else ""
    compared = f"; compared with **{compare.model_name}**" if compare is not None else ""
    return (
        f"## PUMA image search\n{search.index.num_vectors:,} images of {where}{collections}; "
        f"model **{search.model_name}**{compared}."
    )


def build_app(
    index: str | IndexSearch, compare: str | IndexSearch | None = None, *, adapter: str | None = None
) -> gr.Blocks:
    """The search page over ``index`` (an index folder or an opened :class:`IndexSearch`), with ``compare``'s
    results beside it when given; ``adapter``: a copy of the index's adapter (checked by hash, as ``query``)."""
    search = index if isinstance(index, IndexSearch) else IndexSearch(index, adapter)
    other = compare if isinstance(compare, IndexSearch) or compare is None else IndexSearch(compare)
    page = _Page(search, other)
    with gr.Blocks(title="PUMA image search", delete_cache=(3600, 3600)) as app:
        gr.Markdown(_title(search, other))
        state = gr.State({"row": None, "shown": {}})
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                query = query_image()
                k = gr.Slider(
                    1,
                    min(MAX_K, search.index.num_vectors),
                    value=min(10, search.index.num_vectors),
                    step=1,
                    label="k (results per list)",
                    elem_id="k",
                )
                collection = gr.Dropdown(
                    [ALL_COLLECTIONS, *search.collections],
                    value=ALL_COLLECTIONS,
                    label="Collection",
                    elem_id="collection",
                )
                message = gr.Markdown(START_MESSAGE, elem_id="message")
            with gr.Column(scale=3):
                galleries = _result_galleries(search, other)
        picks = gr.Gallery(
            page.picks(),
            label="Or pick a query from the index",
            columns=8,
            height="auto",
            allow_preview=False,
            elem_id="picks",
            object_fit="contain",
            buttons=[],
        )
        inputs = [query, k, collection, state]
        outputs = [message, *galleries.values(), state]
        # Every event joins one queue (one concurrency group): they run in the order they came, one at a time, so
        # a slow search never overwrites the results of a later one.
        queued = {"concurrency_id": "search", "concurrency_limit": 1}
        private = {**queued, "api_visibility": "private"}
        query.upload(lambda *values: page.run(*_fresh(values)), inputs, outputs, api_name="search", **queued)
        k.release(page.run, inputs, outputs, **private)
        collection.input(page.run, inputs, outputs, **private)
        for name, gallery in [("picks", picks), *galleries.items()]:
            picked = gallery.select(_picker(page, name), [state], [query, state], **private)
            picked.then(page.run, inputs, outputs, **private)
    return app


def _picker(page: _Page, gallery: str) -> Any:
    """The select event of one gallery (Gradio passes the click as the argument typed ``gr.SelectData``)."""

    def pick(state: dict[str, Any], selected: gr.SelectData) -> tuple[Any, dict[str, Any]]:
        return page.pick(gallery, state, selected)

    return pick


def _fresh(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """An uploaded image is a query of its own: forget the gallery row of an earlier click."""
    image, k, collection, _ = values
    return image, k, collection, {"row": None, "shown": {}}


def _result_galleries(search: IndexSearch, compare: IndexSearch | None) -> dict[str, gr.Gallery]:
    """The result lists: unified (beside the compared index's), then one tab per collection."""
    options = {
        "columns": RESULT_COLUMNS,
        "height": "auto",
        "allow_preview": False,
        "object_fit": "contain",
        "buttons": [],
    }
    galleries = {}
    with gr.Tabs():
        with gr.Tab(ALL_COLLECTIONS):
            with gr.Row():
                galleries["results"] = gr.Gallery(label=f"Nearest: {search.model_name}", elem_id="results", **options)
                if compare is not None:
                    galleries["compare"] = gr.Gallery(
                        label=f"Nearest: {compare.model_name}", elem_id="compare", **options
                    )
        for number, name in enumerate(search.collections):
            with gr.Tab(name):
                galleries[name] = gr.Gallery(label=f"Nearest in {name}", elem_id=f"collection-{number}", **options)
    return galleries


def free_port(host: str) -> int:
    """A port nobody listens on at ``host`` now."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_port(host: str, port: int) -> None:
    """An ``InvalidInputError`` when ``port`` at ``host`` is taken (or not a port), before the model loads."""
    if not 1 <= port <= 65535:
        raise InvalidInputError(f"--port must lie in [1, 65535]; got {port}.")
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InvalidInputError(
                f"Cannot listen on {host}:{port} ({error.strerror or error}); choose another --port, or leave it "
                "out for a free one."
            ) from None


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def run_app(args: Any) -> None:
    """Start the page of ``args.index`` (``args.compare`` beside it) on ``args.host``: ``args.port``, print its URL,
    and serve until interrupted."""
    if args.port is not None:
        check_port(args.host, args.port)
    app = build_app(args.index, args.compare, adapter=args.adapter)
    port = args.port if args.port is not None else free_port(args.host)
    if args.host not in LOCAL_HOSTS:
        print(
            f"warning: listening on {args.host}: anyone on that network can query this index and see its images",
            file=sys.stderr,
        )
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"search app of {args.index} at http://{shown_host}:{port}/ (Ctrl-C stops it)", flush=True)
    launch(app, args.host, port)


# Gradio cuts a gallery caption to one line with an ellipsis; the score, the name and the collection are the point of
# a result, so captions wrap instead (launch(css=CSS); a Space's app.py passes it too: docs/search.md).
CSS = ".caption-label { white-space: normal !important; max-width: 100% !important; }"


def launch(app: gr.Blocks, host: str, port: int, *, block: bool = True) -> None:
    """Serve ``app`` at ``host``: ``port``: one query at a time (the cores are shared), errors shown in the page,
    never a public share link, no file of the machine served (``allowed_paths`` empty); ``block=False`` returns at
    once (tests)."""
    app.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=False,
        quiet=True,
        show_error=True,
        allowed_paths=[],
        prevent_thread_lock=not block,
        css=CSS,
    )
