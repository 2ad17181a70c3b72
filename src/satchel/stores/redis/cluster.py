# redis-py's cluster client is untyped; this subclass calls into it throughout.
# mypy: disable-error-code="no-untyped-call,misc"
"""The asyncio Redis Cluster client (imported only when a Cluster client is made): redis-py's,
without the reaction that turned one failover into a lasting storm of 503s.

redis-py's asyncio ``RedisCluster`` answers a ``CLUSTERDOWN`` reply, every
``reinitialize_steps``-th ``MOVED`` reply and a topology refresh that fails by *closing*
the client: every connection to every node, including those other requests are using at
that moment, and its default node. Both feed back:

* the requests whose connections were closed under them fail (``Connection closed by
  server``, ``Error UNKNOWN while writing to socket``): 503s, and each failure schedules a
  refresh;
* a request that starts while the default node is unset is routed as a command without a
  key, to a random primary, which answers ``MOVED`` for two keys in three; every fifth
  ``MOVED`` closes the client again.

With 50 requests in flight per worker this sustained itself: a few 503s a second, forever,
after a failover (and sometimes from a cold start), each closing the requests around it
(issue 14's "recovered in 16 s"). Here a refresh keeps the connections and the slot map it
has until the new one is read, and a command is routed only once a map is known. Nothing is
added to a request's path on a healthy cluster: one attribute read.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from redis.asyncio.cluster import RedisCluster

# Set while redis-py handles one command's replies: a close then is its reaction to a
# CLUSTERDOWN or MOVED reply, never the application closing the store.
_IN_COMMAND: ContextVar[bool] = ContextVar("satchel_cluster_in_command", default=False)


class AsyncCluster(RedisCluster):
    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # redis-py decides how to route a command before it refreshes a stale client: a
        # client without a default node (never initialized) would route it to a random
        # primary. Refresh first (nothing to do on the normal path).
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)

    async def _execute_command(self, *args: Any, **kwargs: Any) -> Any:
        token = _IN_COMMAND.set(True)
        try:
            return await super()._execute_command(*args, **kwargs)
        finally:
            _IN_COMMAND.reset(token)

    async def aclose(self) -> None:
        if _IN_COMMAND.get():
            # redis-py reacting to CLUSTERDOWN or to MOVED: read the slot map again on the
            # next command, and leave every connection (and the requests using them) alone.
            self._initialize = True
            return
        await super().aclose()

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> AsyncCluster:
        """redis-py's, except that a refresh that fails (no node answered, or the call's
        deadline cancelled it) closes nothing: the next command tries again."""
        if self._initialize:
            if not self._lock:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._initialize:
                    await self.nodes_manager.initialize(
                        additional_startup_nodes_info=additional_startup_nodes_info,
                        last_failed_node_name=last_failed_node_name,
                    )
                    await self.commands_parser.initialize(self.nodes_manager.default_node)
                    self._initialize = False
        return self
