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
import sys
import time
from contextvars import ContextVar
from typing import Any

from redis.asyncio.cluster import NodesManager, RedisCluster
from redis.exceptions import ClusterDownError

# Set while redis-py handles one command's replies: a close then is its reaction to a
# CLUSTERDOWN or MOVED reply, never the application closing the store.
_IN_COMMAND: ContextVar[bool] = ContextVar("satchel_cluster_in_command", default=False)

#: The slot map is read again at most this often (seconds). While a primary is down, every
#: call to its slots fails and asks for a refresh (``CLUSTER SLOTS``, and each refresh makes
#: every pooled connection reconnect): one per failure took the whole deadline of calls to
#: the healthy primaries, queued behind them. Meanwhile calls use the map they have.
REFRESH_INTERVAL = 0.05


class _Nodes(NodesManager):
    """redis-py's, except that a refresh leaves the connections to the nodes it keeps
    alone. redis-py makes every one reconnect, in case a node became a replica and a
    connection carried its ``READONLY`` state; satchel never reads from replicas (a call
    that reaches a demoted node is answered ``MOVED`` and redirected), and each refresh cost
    every call after it a new connection and its handshake."""

    __slots__ = ()

    def set_nodes(self, old: dict[str, Any], new: dict[str, Any], remove_old: bool = False) -> None:
        if remove_old:
            retired = _RETIRED.setdefault(id(self), [])
            for node in retired:  # a refresh ago: their calls have long finished
                self._in_background(node.disconnect())
            retired.clear()
            for name in [name for name in old if name not in new]:
                gone = old.pop(name)  # as redis-py: in-flight calls finish, idle ones close
                gone.update_active_connections_for_reconnect()
                self._in_background(gone.disconnect_free_connections())
                retired.append(gone)  # (the rest: at the next refresh, or at aclose)
        for name, node in new.items():
            if name in old:
                old[name].server_type = node.server_type
            else:
                old[name] = node
        _remember(self, *old.values())  # (the unused copies of known nodes are dropped)

    def _in_background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)


def _remember(manager: NodesManager, *nodes: Any) -> None:
    known = _KNOWN.setdefault(id(manager), {})
    for node in nodes:
        known[id(node)] = node


_KNOWN: dict[int, dict[int, Any]] = {}
"""Every node object each client's nodes manager has held (by ``id`` of the manager),
closed by ``aclose``: redis-py drops a node that failed a call from its startup nodes
without closing it, and ``aclose`` closes only the nodes still listed."""

_RETIRED: dict[int, list[Any]] = {}
"""The nodes a refresh dropped from each client's map (by ``id`` of its nodes manager,
which takes no weak reference), with the connections that were in use then: closed by the
next refresh or by ``aclose`` (redis-py left them to the garbage collector: a socket per
call in flight, each failover)."""


class AsyncCluster(RedisCluster):
    _refreshed = 0.0  # time.monotonic() of the last refresh of the slot map, or attempt

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the same object, with a refresh that keeps the connections (_Nodes has no
        # state of its own: __slots__ = ())
        self.nodes_manager.__class__ = _Nodes
        manager = self.nodes_manager
        _remember(manager, *manager.startup_nodes.values(), *manager.nodes_cache.values())

    def _refresh_due(self) -> bool:
        if not self._initialize:
            return False
        if self.nodes_manager.default_node is None:  # no map yet: nothing to route with
            return True
        return time.monotonic() - self._refreshed >= REFRESH_INTERVAL

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
            handling = sys.exc_info()[1]
            if isinstance(handling, ClusterDownError):
                # redis-py would now sleep 0.25 s before the error goes up (and, for a
                # read, before its retry): a store call answers a cluster that says it is
                # down at once, as it does a refused connection.
                raise handling
            return
        manager = id(self.nodes_manager)
        _RETIRED.pop(manager, None)
        await super().aclose()
        known = _KNOWN.pop(manager, {})  # (disconnecting a closed node is a no-op)
        await asyncio.gather(*(node.disconnect() for node in known.values()))

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> AsyncCluster:
        """redis-py's, except that a refresh that fails (no node answered, or the call's
        deadline cancelled it) closes nothing (the next command tries again), that the
        command table (``COMMAND``, which does not change) is read once, and that refreshes
        are :data:`REFRESH_INTERVAL` apart."""
        if self._refresh_due():
            if not self._lock:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._refresh_due():
                    self._refreshed = time.monotonic()
                    await self.nodes_manager.initialize(
                        additional_startup_nodes_info=additional_startup_nodes_info,
                        last_failed_node_name=last_failed_node_name,
                    )
                    parser = self.commands_parser
                    if parser.commands:
                        parser.node = self.nodes_manager.default_node
                    else:
                        await parser.initialize(self.nodes_manager.default_node)
                    self._initialize = False
        return self
