// Upstream MCP server on the TypeScript SDK (@modelcontextprotocol/sdk), for the differential suite.
//
// Assembled the way the SDK's docs assemble a server: createMcpExpressApp() (Express 5 + express.json(), which
// inflates gzip, decodes utf-16 charsets, strips BOMs, routes case-insensitively) and a stateless
// StreamableHTTPServerTransport per request. Those lenient readings are the point: the gateway must never
// let through a body this server would execute differently.
//
// Like tests/e2e/mcp_server.py it writes, from the server's own side, one JSON line per HTTP request that
// reached it ("kind":"request", with the JSON-RPC messages as Express parsed them) and one per tool that
// ran ("kind":"tool"), so tests/e2e/upstream.py's UpstreamLog reads both servers alike.
//
//   node server.mjs --port 0 --port-file PATH --log PATH
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { z } from 'zod';

const { values: args } = parseArgs({
  options: { port: { type: 'string', default: '0' }, 'port-file': { type: 'string' }, log: { type: 'string' } },
});

function log(record) {
  if (args.log) appendFileSync(args.log, JSON.stringify({ ts: Date.now() / 1000, ...record }) + '\n');
}

// What a policy looks at in one message: method, id, params.name / params.uri (same shape as mcp_server.py).
function summary(msg) {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return { invalid: true };
  const out = {};
  for (const k of ['method', 'id']) if (k in msg) out[k] = msg[k];
  if ('result' in msg || 'error' in msg) out.response = true;
  const p = msg.params;
  if (p && typeof p === 'object' && !Array.isArray(p)) {
    for (const k of ['name', 'uri']) if (k in p) out[k] = p[k];
    if (p.arguments && typeof p.arguments === 'object') out.arguments = p.arguments;
  }
  return out;
}

function requestRecord(req, extra) {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  return {
    kind: 'request', server: 'typescript', method: req.method, path: req.path, query: req.url.split('?')[1] ?? '',
    http_version: req.httpVersion, 'content-type': headers['content-type'], headers, ...extra,
  };
}

function buildServer() {
  const server = new McpServer({ name: 'grantwall-e2e-ts-upstream', version: '1.0.0' });
  const ran = (tool, args) => log({ kind: 'tool', server: 'typescript', tool, arguments: args });
  server.registerTool('get-sum', { description: 'Adds two integers.', inputSchema: { a: z.number().int(), b: z.number().int() } },
    async ({ a, b }) => { ran('get-sum', { a, b }); return { content: [{ type: 'text', text: `The sum of ${a} and ${b} is ${a + b}.` }] }; });
  server.registerTool('echo', { description: 'Echoes the message back.', inputSchema: { message: z.string() } },
    async ({ message }) => { ran('echo', { message }); return { content: [{ type: 'text', text: message }] }; });
  server.registerTool('get-tiny-image', { description: 'Returns a 1x1 PNG.' },
    async () => { ran('get-tiny-image', {}); return { content: [{ type: 'image', mimeType: 'image/png',
      data: 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==' }] }; });
  server.registerTool('delete-everything', { description: 'Dangerous: deletes everything (used to show denials).',
    inputSchema: { confirm: z.boolean().optional() } },
    async ({ confirm }) => { ran('delete-everything', { confirm: confirm ?? false }); return { content: [{ type: 'text', text: 'Everything was deleted.' }] }; });
  return server;
}

const app = createMcpExpressApp({ host: '127.0.0.1', allowedHosts: ['localhost', '127.0.0.1'] });
app.get('/healthz', (_req, res) => res.send('ok'));

// Runs after express.json(): the body as this server reads it.
app.use((req, _res, next) => {
  const body = req.body;
  const rpc = body === undefined ? undefined : Array.isArray(body) ? body.map(summary) : [summary(body)];
  log(requestRecord(req, rpc === undefined ? {} : { rpc, ...(Array.isArray(body) ? { batch: true } : {}) }));
  next();
});

// Stateless: a fresh server and transport per request (the SDK's stateless example).
app.all('/mcp', async (req, res) => {
  const server = buildServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => { transport.close(); server.close(); });
  try {
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (err) {
    if (!res.headersSent) res.status(500).json({ jsonrpc: '2.0', id: null, error: { code: -32603, message: String(err) } });
  }
});

// Bodies express.json() refused still reached this server: log them, then answer as Express would.
app.use((err, req, res, _next) => {
  log(requestRecord(req, { body_error: String(err.type ?? err.message).slice(0, 200) }));
  res.status(err.status ?? 400).json({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
});

const listener = app.listen(Number(args.port), '127.0.0.1', () => {
  const port = listener.address().port;
  if (args['port-file']) {
    writeFileSync(args['port-file'] + '.tmp', String(port));
    renameSync(args['port-file'] + '.tmp', args['port-file']);
  }
  console.error(`ts mcp server listening on http://127.0.0.1:${port}/mcp`);
});
process.on('SIGTERM', () => { listener.close(); process.exit(0); });
