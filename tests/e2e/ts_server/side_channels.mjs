// A second TypeScript MCP SDK server (same package and node_modules as server.mjs) for test_side_channels.py:
// Streamable HTTP with 2025-11-25 sessions. It serves what the Python server cannot: tasks (tools/call with `task`,
// tasks/get|result|cancel|list), sampling/createMessage with `tools`, and URL-mode elicitation.
//
//   node side_channels.mjs --port 0 --port-file FILE --log FILE
//
// Like mcp_server.py it logs, from the upstream's side, every HTTP request that reached it ("request") and
// every tool that ran ("tool"), as JSON lines the harness's UpstreamLog reads.
import { randomUUID } from 'node:crypto';
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import express from 'express';
import * as z from 'zod/v4';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { InMemoryTaskStore, InMemoryTaskMessageQueue } from '@modelcontextprotocol/sdk/experimental/tasks/stores/in-memory.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const logPath = arg('--log');
const log = (record) => {
  if (logPath) appendFileSync(logPath, JSON.stringify({ ts: Date.now() / 1000, ...record }) + '\n');
};
const ran = (tool, args) => log({ kind: 'tool', tool, arguments: args });

const summary = (msg) => {
  if (!msg || typeof msg !== 'object') return { invalid: true };
  const out = {};
  for (const k of ['method', 'id']) if (k in msg) out[k] = msg[k];
  if ('result' in msg || 'error' in msg) out.response = true;
  const p = msg.params;
  if (p && typeof p === 'object') {
    for (const k of ['name', 'uri', 'taskId']) if (k in p) out[k] = p[k];
  }
  if (msg.result && typeof msg.result === 'object') out.result = msg.result;
  return out;
};

// Tasks shared by all sessions, as in a server with one task store behind several instances: the SDK's
// in-memory store scopes tasks to the creating session, so drop the session to get the shared behaviour.
// Whoever knows a taskId can then read it -- exactly what Grantwall's task binding must stop.
class SharedTaskStore extends InMemoryTaskStore {
  createTask(params, requestId, request) { return super.createTask(params, requestId, request, undefined); }
  getTask(taskId) { return super.getTask(taskId, undefined); }
  storeTaskResult(taskId, status, result) { return super.storeTaskResult(taskId, status, result, undefined); }
  getTaskResult(taskId) { return super.getTaskResult(taskId, undefined); }
  updateTaskStatus(taskId, status, message) { return super.updateTaskStatus(taskId, status, message, undefined); }
  listTasks(cursor) { return super.listTasks(cursor, undefined); }
}
const taskStore = new SharedTaskStore();

function buildServer() {
  const server = new McpServer({ name: 'grantwall-e2e-ts-upstream', version: '1.0.0' }, {
    capabilities: { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
    taskStore,
    taskMessageQueue: new InMemoryTaskMessageQueue(),
  });

  server.registerTool('echo', { description: 'Echoes the message back.', inputSchema: { message: z.string() } },
    async ({ message }) => { ran('echo', { message }); return { content: [{ type: 'text', text: message }] }; });

  server.registerTool('delete-everything', { description: 'Dangerous: deletes everything.', inputSchema: {} },
    async () => { ran('delete-everything', {}); return { content: [{ type: 'text', text: 'Everything was deleted.' }] }; });

  // A long-running tool as a task: the result is stored when the work is done.
  server.experimental.tasks.registerToolTask('slow-job', {
    description: 'A job that runs as a task for `ms` milliseconds.',
    inputSchema: { ms: z.number().default(200) },
  }, {
    async createTask({ ms }, { taskStore: store, taskRequestedTtl }) {
      ran('slow-job', { ms });
      const task = await store.createTask({ ttl: taskRequestedTtl ?? 60000 });
      setTimeout(() => {
        store.storeTaskResult(task.taskId, 'completed', { content: [{ type: 'text', text: `done after ${ms} ms` }] })
          .catch(() => {});
      }, ms);
      return { task };
    },
    async getTask(_args, { taskId, taskStore: store }) { return await store.getTask(taskId); },
    async getTaskResult(_args, { taskId, taskStore: store }) { return await store.getTaskResult(taskId); },
  });

  // Sampling with tools: the server would run whatever tool_use the client's model returns.
  server.registerTool('ask-model', { description: 'Asks the client model, offering it tools.', inputSchema: { prompt: z.string() } },
    async ({ prompt }, extra) => {
      ran('ask-model', { prompt });
      const result = await server.server.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: prompt } }],
        maxTokens: 100,
        tools: [
          { name: 'echo', inputSchema: { type: 'object', properties: { message: { type: 'string' } } } },
          { name: 'delete-everything', inputSchema: { type: 'object' } },
        ],
      }, { relatedRequestId: extra.requestId, timeout: 3000 });
      const uses = (Array.isArray(result.content) ? result.content : [result.content]).filter((c) => c.type === 'tool_use');
      for (const use of uses) ran(`model-chose:${use.name}`, use.input ?? {});
      return { content: [{ type: 'text', text: `model used ${uses.map((u) => u.name).join(',') || 'no tool'}` }] };
    });

  // URL-mode elicitation: the client is asked to open a URL.
  server.registerTool('open-url', { description: 'Asks the user to open a URL.', inputSchema: { url: z.string() } },
    async ({ url }, extra) => {
      ran('open-url', { url });
      try {
        const r = await server.server.elicitInput({ mode: 'url', url, message: 'Please sign in', elicitationId: randomUUID() },
          { relatedRequestId: extra.requestId, timeout: 2000 });
        return { content: [{ type: 'text', text: `elicitation ${r.action}` }] };
      } catch (e) {
        return { content: [{ type: 'text', text: `elicitation failed: ${e.message}` }], isError: true };
      }
    });
  return server;
}

const sessions = new Map();
const app = express();
app.use(express.json({ limit: '4mb' }));
app.use((req, _res, next) => {
  if (req.path !== '/healthz') {
    const body = req.body;
    log({ kind: 'request', method: req.method, path: req.path, 'mcp-session-id': req.get('mcp-session-id'),
      rpc: body === undefined ? [] : (Array.isArray(body) ? body : [body]).map(summary) });
  }
  next();
});
app.get('/healthz', (_req, res) => res.send('ok'));

const handle = async (req, res) => {
  const sid = req.get('mcp-session-id');
  const session = sid ? sessions.get(sid) : undefined;
  if (session) return session.handleRequest(req, res, req.body);
  if (sid) return res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
  if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
    return res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'No session' }, id: null });
  }
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (id) => sessions.set(id, transport),
  });
  transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
  await buildServer().connect(transport);
  await transport.handleRequest(req, res, req.body);
};
app.post('/mcp', handle);
app.get('/mcp', handle);
app.delete('/mcp', handle);

const listener = app.listen(Number(arg('--port', '0')), '127.0.0.1', () => {
  const port = listener.address().port;
  const portFile = arg('--port-file');
  if (portFile) { writeFileSync(portFile + '.tmp', String(port)); renameSync(portFile + '.tmp', portFile); }
  console.error(`ts mcp server listening on http://127.0.0.1:${port}/mcp`);
});
