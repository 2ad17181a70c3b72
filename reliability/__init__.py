"""The reliability harness of issue 14: real servers on loopback, a bounded asyncio load
generator, scenarios that return result rows, and one table.

    make reliability          # full: 100 clients x 60 s per load scenario
    make reliability-short    # CI: 20 clients x 5 s, the same scenarios

A scenario is ``def scenario(ctx: Context) -> list[Row]``. It starts servers with
``ctx.server(...)`` (stopped by the run's exit stack), drives them with ``ctx.load(...)``
(which takes ``events``: callables run at a time offset while the load runs, the way to
inject a fault), and turns each :class:`~reliability.load.LoadResult` into a
:class:`~reliability.results.Row` with :func:`~reliability.results.row_from` and a rule.
See docs/reliability.md.
"""
