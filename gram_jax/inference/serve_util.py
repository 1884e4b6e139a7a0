"""Running the reward server: a connection cap, client-gone cancellation, and a graceful stop
(SIGTERM: refuse new work, give in-flight requests a grace period, then fail what is left).
Used by the serve stage (in the foreground) and by tests and benchmarks (a background
thread)."""
import asyncio
import json
import logging as std_logging
import signal
import threading
from typing import Callable

from absl import logging
from aiohttp import web

from gram_jax.inference.server import RewardServer

_REFUSAL = json.dumps({"error": "too many open connections (max_connections)"}).encode()


class _Refused(asyncio.Protocol):
  """A connection over the cap: one 503, whatever the client sends is discarded unparsed,
  and the connection is closed a moment later (closing with unread data would reset it
  before the client read the answer)."""

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    transport.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL))
    asyncio.get_running_loop().call_later(0.5, transport.close)

  def data_received(self, data: bytes) -> None:
    pass


def _capped(server: web.Server, cap: int) -> Callable[[], asyncio.Protocol]:
  return lambda: _Refused() if len(server.connections) >= cap else server()


class Listening:
  """A started server: `port`, and `stop(grace_s)`."""

  def __init__(self, server: RewardServer, runner: web.AppRunner, listener: asyncio.Server):
    self.server, self.runner, self.listener = server, runner, listener
    self.port = listener.sockets[0].getsockname()[1]

  async def stop(self) -> None:
    """Stops listening and answers 503 to new requests on open connections; in-flight
    requests get the runner's grace period, then are cancelled (their queued work dropped)."""
    self.server.draining = True
    self.listener.close()
    await self.runner.cleanup()


class _OneLineRequestErrors(std_logging.Filter):
  """aiohttp logs a malformed request (bad header, oversized header) with a traceback whose
  message quotes the offending line, an API key included, for any client: here it is one
  line naming the kind of error, nothing from the request."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if error is not None:
      record.msg = "refused a malformed request (%s)"
      record.args = (type(error).__name__,)
      record.exc_info, record.exc_text = None, None
    return True


REQUEST_ERRORS = std_logging.getLogger("gram_jax.serve.requests")
REQUEST_ERRORS.addFilter(_OneLineRequestErrors())


async def start(server: RewardServer, host: str = "127.0.0.1", port: int = 0,
                grace_s: float = 20.0) -> Listening:
  runner = web.AppRunner(server.app(), handler_cancellation=True, shutdown_timeout=grace_s,
                         access_log=None, logger=REQUEST_ERRORS)
  await runner.setup()
  gauge = server.metrics.connections
  gauge.set_function(lambda: len(runner.server.connections) if runner.server else 0)
  listener = await asyncio.get_running_loop().create_server(
      _capped(runner.server, server.limits.max_connections), host, port)
  return Listening(server, runner, listener)


def serve_until_terminated(server: RewardServer, host: str, port: int, grace_s: float) -> None:
  """Serves until SIGTERM or SIGINT, then stops within grace_s (Kubernetes waits 30 s by
  default before SIGKILL, so keep grace_s below that)."""
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
