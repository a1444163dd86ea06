"""The runtime inside one local Lambda execution environment (run as a script, stdlib only).

What Lambda's Python runtime does, reduced to what docpipe's emulator needs: import the
handler's module once (the init phase, timed), then answer invocations one after another
with the same module, globals and connections (a warm environment). The emulator talks to
it over two pipes given as file descriptors on the command line (stdout and stderr stay the
function's log, as on Lambda); one JSON line per message:

  runtime -> emulator  {"type": "ready", "init_ms": ...} | {"type": "init_error", "error": ...}
  emulator -> runtime  {"type": "invoke", "request_id", "event", "deadline_ms", ...}
  runtime -> emulator  {"type": "result", "response", "max_rss_kb"} | {"type": "error", "error"}

Errors carry the exception's class only: its text may quote a record.

Usage: python lambda_bootstrap.py READ_FD WRITE_FD MODULE.FUNCTION
"""

import importlib
import json
import os
import resource
import sys
import time


class Context:
    """The attributes and method of Lambda's context object (no docpipe extras)."""

    def __init__(self, request_id: str, deadline_ms: int, function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _max_rss_kb() -> int:
    """This process's peak resident memory since exec (VmHWM). Not ``ru_maxrss``: Linux keeps
    that across exec, so a child would start with the peak of the process that forked it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    read_fd, write_fd, handler_name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    # Run as a script, this file's folder would lead sys.path; Lambda's leads with the code.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)
    inbox = os.fdopen(read_fd, "r", encoding="utf-8")
    outbox = os.fdopen(write_fd, "w", encoding="utf-8")

    def say(message: dict) -> None:
        outbox.write(json.dumps(message) + "\n")
        outbox.flush()

    module_name, _, function_name = handler_name.rpartition(".")
    t0 = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # noqa: BLE001 - Runtime.ImportModuleError / HandlerNotFound
        say({"type": "init_error", "error": type(exc).__name__})
        return 1
    say({"type": "ready", "init_ms": (time.perf_counter() - t0) * 1000, "max_rss_kb": _max_rss_kb()})

    for line in inbox:
        message = json.loads(line)
        if message.get("type") != "invoke":
            continue
        os.environ["_X_AMZN_TRACE_ID"] = message.get("trace_id", "")
        context = Context(message["request_id"], message["deadline_ms"], message["function_arn"])
        try:
            response = handler(message["event"], context)
            # Lambda serialises the response; an unserialisable one is a function error too.
            line = json.dumps({"type": "result", "response": response, "max_rss_kb": _max_rss_kb()})
        except Exception as exc:  # noqa: BLE001 - the function error Lambda reports
            say({"type": "error", "error": type(exc).__name__, "max_rss_kb": _max_rss_kb()})
            continue
        outbox.write(line + "\n")
        outbox.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
