"""Running the reward server: a connection cap, client-gone cancellation, and a graceful stop
(SIGTERM: refuse new work, give in-flight requests a grace period, then fail what is left).
Used by the serve stage (in the foreground) and by tests and benchmarks (a background
thread)."""
import asyncio
import collections
import json
import logging as std_logging
import os
import signal
import sys
import threading
import time
from typing import Callable

from absl import logging
from aiohttp import http_exceptions, web, web_protocol

from gram_jax.serving.request_parsing import Limits
from gram_jax.serving.server import RewardServer



class _Refused(asyncio.Protocol):
  """A connection over a cap: one 503, whatever the client sends is discarded unparsed,
  and the connection is closed a moment later (closing with unread data would reset it
  before the client read the answer)."""

  def __init__(self, limit: str):
    self.answer = json.dumps({"error": f"too many open connections ({limit})"}).encode()

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    transport.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.answer), self.answer))
    asyncio.get_running_loop().call_later(0.5, transport.close)

  def data_received(self, data: bytes) -> None:
    pass


class _Gate(asyncio.Protocol):
  """A new connection's first protocol: once its peer is known, it hands the transport to
  the HTTP handler or to a refusal."""

  def __init__(self, slots: "_Slots"):
    self.slots = slots

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    protocol = self.slots.admit(transport.get_extra_info("peername"))
    transport.set_protocol(protocol)
    protocol.connection_made(transport)


_SILENT_S = 0.5  # an idle connection silent this long may be closed for a newcomer


class _Slots:
  """The server's connection slots. A connection is idle while it carries no request: before
  its first, and between requests on a kept-alive one. An idle connection is closed
  `header_timeout_s` after opening if it never brought a request, and `keepalive_s` after
  its last answer otherwise. At a cap, an idle connection that has been silent for
  `_SILENT_S` makes room for the newcomer: past `max_connections_per_peer` the newcomer's
  own peer (address) gives up its longest-idle one, past `max_connections` the peer holding
  the most connections does. So
  neither idle sockets nor kept-alive ones (no key needed to hold either) can hold every
  slot, and /health answers at the cap. A connection idle for less than that is a client
  about to send (under overload, evicting those reset requests that a 503 should answer);
  with no connection to give up, the newcomer is refused (503)."""

  def __init__(self, limits: Limits):
    self.limits = limits
    self.server: web.Server | None = None  # the runner's, once it is set up
    self.idle_since: dict = {}  # handler -> when its connection opened or last answered
    self.peers: dict = {}  # handler -> its peer's address
    self.requested: set = set()  # handlers whose connection has brought a request
    self.busy: dict = {}  # handler -> requests in progress on its connection

  def protocol(self) -> asyncio.Protocol:
    return _Gate(self)

  def admit(self, peer: tuple | None) -> asyncio.Protocol:
    address = peer[0] if peer else ""
    per_peer = self.limits.max_connections_per_peer
    if per_peer and sum(self.peers.get(h) == address
                        for h in self.server.connections) >= per_peer:
      if not self.make_room(address):
        return _Refused("max_connections_per_peer")
    elif len(self.server.connections) >= self.limits.max_connections:
      if not self.make_room(None):
        return _Refused("max_connections")
    handler = self.server()
    self.idle_since[handler], self.peers[handler] = time.monotonic(), address
    return handler

  def make_room(self, address: str | None) -> bool:
    """Closes an idle connection silent for `_SILENT_S` to make room: `address`'s own
    longest-idle one, or (None) the longest-idle one of the address holding the most
    connections, so that a few clients are not evicted for one that holds many. False if
    there is none."""
    silent = min(_SILENT_S, self.limits.header_timeout_s / 2)
    now = time.monotonic()
    ready = [h for h in self.idle() if now - self.idle_since[h] >= silent]
    if address is not None:
      ready = [h for h in ready if self.peers.get(h) == address]
    if not ready:
      return False
    held = collections.Counter(self.peers.get(h) for h in self.server.connections)
    self.close(max(ready, key=lambda h: (held[self.peers.get(h)], -self.idle_since[h])))
    return True

  def idle(self) -> list:
    """Open connections carrying no request, longest idle first."""
    return sorted((h for h in self.server.connections
                   if not self.busy.get(h) and h in self.idle_since), key=self.idle_since.get)

  @staticmethod
  def close(handler) -> None:
    if handler.transport is not None:
      handler.transport.close()

  @web.middleware
  async def mark(self, request: web.Request, handler: Callable) -> web.StreamResponse:
    connection = request.protocol
    self.requested.add(connection)
    self.busy[connection] = self.busy.get(connection, 0) + 1
    try:
      return await handler(request)
    finally:
      self.busy[connection] -= 1
      self.idle_since[connection] = time.monotonic()

  async def sweep(self) -> None:
    """Closes idle connections past their deadline and forgets closed ones, once a second
    (or twice per deadline)."""
    while True:
      await asyncio.sleep(min(1.0, self.limits.header_timeout_s / 2,
                              self.limits.keepalive_s / 2))
      now = time.monotonic()
      live = set(self.server.connections)
      for handler in [h for h, since in self.idle_since.items()
                      if h not in live and now - since > 1.0]:
        del self.idle_since[handler]
        self.peers.pop(handler, None)
        self.busy.pop(handler, None)
        self.requested.discard(handler)
      for handler in self.idle():
        deadline = (self.limits.keepalive_s if handler in self.requested
                    else self.limits.header_timeout_s)
        if now - self.idle_since[handler] > deadline:
          self.close(handler)


class Listening:
  """A started server: `port`, and `stop(grace_s)`."""

  def __init__(self, server: RewardServer, runner: web.AppRunner, listener: asyncio.Server,
               sweeper: asyncio.Task):
    self.server, self.runner, self.listener, self.sweeper = server, runner, listener, sweeper
    self.port = listener.sockets[0].getsockname()[1]

  async def stop(self) -> None:
    """Stops listening and answers 503 to new requests on open connections; in-flight
    requests get the runner's grace period, then are cancelled (their queued work dropped)."""
    self.server.draining = True
    self.listener.close()
    self.sweeper.cancel()
    await self.runner.cleanup()


class _OneLineRequestErrors(std_logging.Filter):
  """aiohttp logs a malformed request (bad header, oversized header) with a traceback whose
  message quotes the offending line, an API key included, for any client: here it is one
  line naming the kind of error, nothing from the request. Other errors keep their
  traceback."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, web_protocol.RequestPayloadError):  # a body aiohttp could not
      error = error.__cause__ or error                       # decode (bad gzip), drained
    if isinstance(error, (http_exceptions.HttpProcessingError,
                          web_protocol.RequestPayloadError)):
      record.msg = "refused a malformed request (%s)"
      record.args = (type(error).__name__,)
      record.exc_info, record.exc_text = None, None
    return True


REQUEST_ERRORS = std_logging.getLogger("gram_jax.serve.requests")
REQUEST_ERRORS.addFilter(_OneLineRequestErrors())


async def start(server: RewardServer, host: str = "127.0.0.1", port: int = 0,
                grace_s: float = 20.0) -> Listening:
  app = server.app()
  runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=grace_s,
                         keepalive_timeout=server.limits.keepalive_s, access_log=None,
                         logger=REQUEST_ERRORS)
  slots = _Slots(server.limits)
  app.middlewares.append(slots.mark)
  await runner.setup()
  slots.server = runner.server
  gauge = server.metrics.connections
  gauge.set_function(lambda: len(runner.server.connections) if runner.server else 0)
  listener = await asyncio.get_running_loop().create_server(slots.protocol, host, port)
  return Listening(server, runner, listener, asyncio.create_task(slots.sweep()))


def serve_until_terminated(server: RewardServer, host: str, port: int, grace_s: float) -> None:
  """Serves until SIGTERM or SIGINT, then stops within grace_s (Kubernetes waits 30 s by
  default before SIGKILL, so keep grace_s below that). Device or host work still running
  then (a long generation, a compile) cannot be interrupted and would hold the exit past
  grace_s: its requests are already answered or closed and a server keeps no state, so
  the process exits at once (status 0) instead of waiting for it."""
  async def main() -> None:
    listening = await start(server, host, port, grace_s)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
      loop.add_signal_handler(signum, stopped.set)
    logging.info("listening on http://%s:%d", host, listening.port)
    await stopped.wait()
    logging.info("stopping: no new requests; in-flight ones have %.0f s", grace_s)
    await listening.stop()
  asyncio.run(main())
  if server.work_in_flight():
    logging.warning("stopped with device or host work still running (it cannot be "
                    "interrupted); exiting without waiting for it")
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class BackgroundApp:
  """The reward server on host:port (0 = a free port) in its own event loop thread."""

  def __init__(self, server: RewardServer, host: str = "127.0.0.1", port: int = 0,
               grace_s: float = 20.0):
    self.loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve():
      asyncio.set_event_loop(self.loop)
      self.listening = self.loop.run_until_complete(start(server, host, port, grace_s))
      ready.set()
      self.loop.run_forever()

    self.thread = threading.Thread(target=serve, daemon=True)
    self.thread.start()
    ready.wait(60)
    self.port = self.listening.port
    self.url = f"http://{host}:{self.port}"

  def stop(self) -> None:
    asyncio.run_coroutine_threadsafe(self.listening.stop(), self.loop).result(60)
    self.loop.call_soon_threadsafe(self.loop.stop)
    self.thread.join(30)


def serve_in_background(server: RewardServer, host: str = "127.0.0.1", port: int = 0,
                        grace_s: float = 20.0) -> BackgroundApp:
  """The reward server, listening on loopback in a background thread."""
  return BackgroundApp(server, host, port, grace_s)
