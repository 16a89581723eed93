"""kinesis-data: the Python runtime interface client (standard library only).

Run by the function host as `<python> python_bootstrap.py` with the Lambda environment. It
imports the handler named by _HANDLER (`module.function`, the module path may be dotted or
use slashes) from LAMBDA_TASK_ROOT, then loops on the Runtime API at AWS_LAMBDA_RUNTIME_API:
`next`, call the handler, post the result or the error. It exits as soon as the Runtime API
cannot be reached, so it never outlives the server.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import sys
import time
import traceback
import types

API_PREFIX = "/2018-06-01/runtime"
THIS_FILE = os.path.abspath(__file__)


class Fault(Exception):
    """An error of the runtime itself (bad handler, marshalling), with AWS's error type."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class RuntimeClient:
    def __init__(self, address):
        host, _, port = address.rpartition(":")
        try:
            port = int(port)
        except ValueError:
            sys.stderr.write("kinesis-data: bad AWS_LAMBDA_RUNTIME_API %r\n" % address)
            os._exit(1)
        self.conn = http.client.HTTPConnection(host or "127.0.0.1", port)

    def call(self, method, path, body=None, headers=None):
        try:
            self.conn.request(method, API_PREFIX + path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            return resp.status, resp.headers, resp.read()
        except (OSError, http.client.HTTPException):
            # The host went away: do not outlive it.
            os._exit(1)

    def post_error(self, path, body):
        data = json.dumps(body).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Function-Error-Type": body.get("errorType", "Unhandled"),
        }
        return self.call("POST", path, data, headers)


class JsonEncoder(json.JSONEncoder):
    def default(self, o):
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


def client_context_of(text):
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    client = doc.get("client")
    if isinstance(client, dict):
        client = types.SimpleNamespace(
            installation_id=client.get("installation_id"),
            app_title=client.get("app_title"),
            app_version_name=client.get("app_version_name"),
            app_version_code=client.get("app_version_code"),
            app_package_name=client.get("app_package_name"),
        )
    return types.SimpleNamespace(client=client, custom=doc.get("custom"), env=doc.get("env"))


def identity_of(text):
    doc = {}
    if text:
        try:
            doc = json.loads(text) or {}
        except ValueError:
            doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return types.SimpleNamespace(
        cognito_identity_id=doc.get("cognitoIdentityId"),
        cognito_identity_pool_id=doc.get("cognitoIdentityPoolId"),
    )


class LambdaContext:
    def __init__(self, request_id, deadline_ms, invoked_arn, client_context, identity):
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message):
        sys.stdout.write(str(message))
        sys.stdout.flush()

    def __repr__(self):
        return "LambdaContext([aws_request_id=%s,function_name=%s,function_version=%s])" % (
            self.aws_request_id,
            self.function_name,
            self.function_version,
        )


CURRENT_REQUEST = {"id": None}


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = CURRENT_REQUEST["id"]
        return True


def setup_logging():
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)


def user_frames(tb):
    return [f for f in traceback.extract_tb(tb) if os.path.abspath(f.filename) != THIS_FILE]


def error_document(exc, request_id=None):
    if isinstance(exc, Fault):
        doc = {"errorMessage": exc.message, "errorType": exc.error_type, "stackTrace": exc.trace}
    else:
        doc = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": traceback.format_list(user_frames(exc.__traceback__)),
        }
    if request_id:
        doc["requestId"] = request_id
    return doc


def log_error(doc):
    lines = ["[ERROR] %s: %s" % (doc["errorType"], doc["errorMessage"])]
    if doc.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in doc["stackTrace"])
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def load_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, e))
    modname = modname.replace("/", ".")
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise Fault("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), trace)
    handler_fn = getattr(module, fname, None)
    if handler_fn is None:
        fault = Fault("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))

        def missing(event, context):
            raise fault

        return missing
    return handler_fn


def marshal(result):
    if isinstance(result, (bytes, bytearray)):
        return bytes(result), "application/unknown"
    try:
        return json.dumps(result, cls=JsonEncoder).encode("utf-8"), "application/json"
    except (TypeError, ValueError, OverflowError) as e:
        raise Fault("Runtime.MarshalError", "Unable to marshal response: %s" % e)


def handle(client, handler, headers, body):
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
    try:
        deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))
    except ValueError:
        deadline_ms = 0
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    CURRENT_REQUEST["id"] = request_id
    context = LambdaContext(
        request_id,
        deadline_ms,
        headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        client_context_of(headers.get("Lambda-Runtime-Client-Context")),
        identity_of(headers.get("Lambda-Runtime-Cognito-Identity")),
    )
    path = "/invocation/%s" % request_id
    try:
        try:
            event = json.loads(body) if body else {}
        except ValueError as e:
            raise Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
        result = handler(event, context)
        data, content_type = marshal(result)
    except Exception as e:  # the function's error, reported to the invoker
        doc = error_document(e, request_id)
        log_error(doc)
        client.post_error(path + "/error", doc)
        return
    client.call("POST", path + "/response", data, {"Content-Type": content_type})


def main():
    client = RuntimeClient(os.environ.get("AWS_LAMBDA_RUNTIME_API", ""))
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    setup_logging()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as e:
        doc = error_document(e)
        log_error(doc)
        client.post_error("/init/error", doc)
        sys.exit(1)
    while True:
        status, headers, body = client.call("GET", "/invocation/next")
        if status != 200:
            sys.stderr.write("kinesis-data: runtime API answered %s to next; exiting\n" % status)
            sys.exit(1)
        handle(client, handler, headers, body)


if __name__ == "__main__":
    main()
