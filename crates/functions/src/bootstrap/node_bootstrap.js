'use strict';
// kinesis-data: the Node.js runtime interface client (CommonJS, standard library only).
//
// Run by the function host as `<node> node_bootstrap.js` with the Lambda environment. It loads
// the handler named by _HANDLER (`file.export`, the file resolved as file.js, file.mjs or
// file.cjs under LAMBDA_TASK_ROOT, the export path may be nested), then loops on the Runtime
// API at AWS_LAMBDA_RUNTIME_API. Handlers may be async (return a promise) or take a callback
// `(event, context, callback)`. It exits as soon as the Runtime API cannot be reached.

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const PREFIX = '/2018-06-01/runtime';
const address = process.env.AWS_LAMBDA_RUNTIME_API || '';
const colon = address.lastIndexOf(':');
const apiHost = address.slice(0, colon) || '127.0.0.1';
const apiPort = Number(address.slice(colon + 1));
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

let currentRequestId;
let currentAnswered = true;

// CloudFormation response URLs. AWS's are HTTPS on port 443, and handlers send to them with
// `https.request({hostname, path})` (CDK's provider framework does), dropping any port. Ours
// are plain HTTP on the server's port (`/_kinesis-data/cfn-response/<token>`), so an HTTPS
// request for such a path goes to the endpoint of AWS_ENDPOINT_URL over HTTP instead. Every
// other request is left alone.
const CFN_RESPONSE_PATH = '/_kinesis-data/cfn-response/';

function cfnResponseTarget(args) {
  const first = args[0];
  let p;
  if (typeof first === 'string') {
    try {
      p = new URL(first).pathname;
    } catch (_) {
      return undefined;
    }
  } else if (first instanceof URL) {
    p = first.pathname;
  } else if (first && typeof first === 'object') {
    p = first.path || first.pathname;
  }
  if (typeof p !== 'string' || !p.startsWith(CFN_RESPONSE_PATH)) return undefined;
  let endpoint;
  try {
    endpoint = new URL(process.env.AWS_ENDPOINT_URL || '');
  } catch (_) {
    return undefined;
  }
  if (endpoint.protocol !== 'http:') return undefined;
  return endpoint;
}

function routeCfnResponses() {
  const https = require('https');
  for (const name of ['request', 'get']) {
    const original = https[name];
    https[name] = function (...args) {
      const endpoint = cfnResponseTarget(args);
      if (!endpoint) return original.apply(this, args);
      let options;
      let rest;
      if (typeof args[0] === 'string' || args[0] instanceof URL) {
        const u = new URL(String(args[0]));
        const extra = args[1] && typeof args[1] === 'object' && typeof args[1] !== 'function' ? args[1] : {};
        options = Object.assign({}, extra, { path: u.pathname + u.search });
        rest = extra === args[1] ? args.slice(2) : args.slice(1);
      } else {
        options = Object.assign({}, args[0]);
        rest = args.slice(1);
      }
      delete options.agent;
      delete options.protocol;
      delete options.host;
      options.hostname = endpoint.hostname;
      options.port = endpoint.port || 80;
      return http[name](options, ...rest);
    };
  }
}

function die() {
  // The host went away: do not outlive it.
  process.exit(1);
}

function call(method, p, body, headers) {
  return new Promise((resolve) => {
    const data = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(String(body));
    const allHeaders = Object.assign({}, headers || {});
    if (data !== undefined) allHeaders['Content-Length'] = data.length;
    const req = http.request(
      { host: apiHost, port: apiPort, method, path: PREFIX + p, agent, headers: allHeaders },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', die);
      },
    );
    req.on('error', die);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

function postError(p, doc) {
  return call('POST', p, JSON.stringify(doc), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': doc.errorType,
  });
}

function patchConsole() {
  const make = (stream, level) => (...args) => {
    stream.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`);
  };
  console.log = make(process.stdout, 'INFO');
  console.info = make(process.stdout, 'INFO');
  console.debug = make(process.stdout, 'DEBUG');
  console.warn = make(process.stderr, 'WARN');
  console.error = make(process.stderr, 'ERROR');
  console.trace = make(process.stderr, 'TRACE');
}

function fault(type, message) {
  const e = new Error(message);
  e.name = type;
  return e;
}

function errorDocument(err) {
  if (err instanceof Error) {
    const trace = typeof err.stack === 'string' ? err.stack.split('\n') : [];
    return { errorType: err.name || 'Error', errorMessage: String(err.message), trace };
  }
  if (err === null || err === undefined) {
    return { errorType: 'Error', errorMessage: String(err), trace: [] };
  }
  if (typeof err === 'object') {
    let message;
    try {
      message = JSON.stringify(err);
    } catch (_) {
      message = String(err);
    }
    return { errorType: 'object', errorMessage: message, trace: [] };
  }
  return { errorType: typeof err, errorMessage: String(err), trace: [] };
}

async function loadModule(taskRoot, handlerString) {
  const fullPath = path.resolve(taskRoot, handlerString);
  const moduleRoot = path.dirname(fullPath);
  const base = path.basename(fullPath);
  const match = /^([^.]*)\.(.*)$/.exec(base);
  if (!match) throw fault('Runtime.MalformedHandlerName', 'Bad handler');
  const [, moduleName, exportPath] = match;
  const stem = path.join(moduleRoot, moduleName);
  let file;
  for (const ext of ['.js', '.mjs', '.cjs']) {
    if (fs.existsSync(stem + ext)) {
      file = stem + ext;
      break;
    }
  }
  let mod;
  try {
    if (file === undefined) {
      file = require.resolve(moduleName, { paths: [moduleRoot, taskRoot] });
    }
    if (file.endsWith('.mjs')) {
      mod = await import(pathToFileURL(file).href);
    } else {
      try {
        mod = require(file);
      } catch (e) {
        if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
          mod = await import(pathToFileURL(file).href);
        } else {
          throw e;
        }
      }
    }
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw fault('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw fault('Runtime.ImportModuleError', `Error: Cannot find module '${moduleName}'\nRequire stack:\n- ${__filename}`);
    }
    throw fault('Runtime.ImportModuleError', `${(e && e.name) || 'Error'}: ${e && e.message}`);
  }
  let handler = mod;
  for (const part of exportPath.split('.')) {
    handler = handler === undefined || handler === null ? undefined : handler[part];
  }
  if (handler === undefined && mod && mod.default && typeof mod.default === 'object') {
    handler = exportPath.split('.').reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), mod.default);
  }
  if (handler === undefined) throw fault('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  if (typeof handler !== 'function') throw fault('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  return handler;
}

function parseJson(text) {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (_) {
    return undefined;
  }
}

async function invoke(handler, next) {
  const headers = next.headers;
  const requestId = headers['lambda-runtime-aws-request-id'];
  const deadline = Number(headers['lambda-runtime-deadline-ms']) || 0;
  const traceId = headers['lambda-runtime-trace-id'];
  if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
  else delete process.env._X_AMZN_TRACE_ID;
  currentRequestId = requestId;
  currentAnswered = false;
  const base = `/invocation/${requestId}`;
  const fail = async (err) => {
    if (currentAnswered) return;
    currentAnswered = true;
    const doc = errorDocument(err);
    console.error('Invoke Error', JSON.stringify(doc));
    await postError(`${base}/error`, doc);
  };

  let event;
  try {
    event = next.body.length ? JSON.parse(next.body.toString('utf8')) : {};
  } catch (e) {
    await fail(fault('Runtime.UnmarshalError', `Unable to unmarshal input: ${e.message}`));
    return;
  }
  const env = process.env;
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: requestId,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJson(headers['lambda-runtime-client-context']),
    identity: parseJson(headers['lambda-runtime-cognito-identity']),
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };

  const settled = await new Promise((resolve) => {
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      resolve({ err, value });
    };
    const callback = (err, value) => finish(err === undefined || err === null ? null : err, value);
    context.done = callback;
    context.succeed = (value) => finish(null, value);
    context.fail = (err) => finish(err === undefined || err === null ? fault('Error', 'handled') : err);
    try {
      const r = handler(event, context, callback);
      if (r && typeof r.then === 'function') {
        r.then(
          (value) => finish(null, value),
          (err) => finish(err === undefined || err === null ? fault('Error', `Promise rejected with ${err}`) : err),
        );
      } else if (handler.length < 3) {
        finish(null, r);
      }
    } catch (e) {
      finish(e === undefined || e === null ? fault('Error', String(e)) : e);
    }
  });

  if (settled.err !== null && settled.err !== undefined) {
    await fail(settled.err);
    return;
  }
  let payload;
  try {
    payload = settled.value === undefined ? 'null' : JSON.stringify(settled.value);
    if (payload === undefined) payload = 'null';
  } catch (e) {
    await fail(fault('Runtime.MarshalError', `Unable to stringify response body: ${e.message}`));
    return;
  }
  currentAnswered = true;
  await call('POST', `${base}/response`, payload, { 'Content-Type': 'application/json' });
}

async function fatal(err, type) {
  const doc = errorDocument(err);
  if (type) doc.errorType = type;
  process.stderr.write(`${new Date().toISOString()}\t${currentRequestId}\tERROR\t${JSON.stringify(doc)}\n`);
  if (currentRequestId !== undefined && !currentAnswered) {
    currentAnswered = true;
    await postError(`/invocation/${currentRequestId}/error`, doc);
  }
  process.exit(129);
}

async function main() {
  routeCfnResponses();
  patchConsole();
  process.on('uncaughtException', (err) => fatal(err));
  process.on('unhandledRejection', (reason) =>
    fatal(reason instanceof Error ? reason : fault('Runtime.UnhandledPromiseRejection', String(reason))),
  );
  let handler;
  try {
    handler = await loadModule(process.env.LAMBDA_TASK_ROOT || process.cwd(), process.env._HANDLER || '');
  } catch (e) {
    const doc = errorDocument(e);
    process.stderr.write(`${new Date().toISOString()}\tundefined\tERROR\t${JSON.stringify(doc)}\n`);
    await postError('/init/error', doc);
    process.exit(129);
  }
  for (;;) {
    const next = await call('GET', '/invocation/next');
    if (next.status !== 200) {
      process.stderr.write(`kinesis-data: runtime API answered ${next.status} to next; exiting\n`);
      process.exit(1);
    }
    await invoke(handler, next);
  }
}

main();
