// The official Node.js SDK (@coze/api, pinned in package.json) as a client of the Coze
// simulator, for tests/test_simulator_node.py. One command per run:
//
//   node coze-sdk.mjs COMMAND '<JSON options>'
//
// Each prints JSON documents, one per line, on stdout; the test reads them. Everything the
// SDK does on the wire (the handshake, headers, URLs, bodies, parsing, error classes) is
// the SDK's own: this file only calls it.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { randomUUID } from 'node:crypto';
import {
  CozeAPI,
  getDeviceCode,
  getDeviceToken,
  refreshOAuthToken,
} from '@coze/api';

const [command, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson ?? '{}');
const emit = (doc) => process.stdout.write(`${JSON.stringify(doc)}\n`);

function client() {
  return new CozeAPI({
    token: options.token,
    baseURL: options.apiBase,
    baseWsURL: options.wsBase,
  });
}

// An SDK error as the test compares it: its class and the fields the SDK filled in.
function described(error) {
  return {
    class: error?.constructor?.name,
    name: error?.name,
    status: error?.status ?? null,
    code: error?.code ?? null,
    msg: error?.msg ?? null,
    logid: error?.logid ?? null,
    rawError: error?.rawError ?? null,
    message: String(error?.message ?? error),
  };
}

// ------------------------------------------------------------------------- the voice chat

// Runs options.steps over the SDK's WebSocket chat client (client.websockets.chat.create):
//   {"send": EVENT}                    one event, given an id as the SDK's own tools do
//   {"stream": PATH, "rate": N, "chunk_ms": N}   raw s16le mono from PATH as appends
//   {"wait": TYPE}                     until an event of TYPE arrives (after the last wait)
//   {"wait_audio": true}               until a conversation.audio.delta arrives
// Prints one {"received": ...} per event (audio content replaced by its byte count), then
// {"done": true}. An SDK-level error ends the run with {"ws_error": ...}.
async function chat() {
  const ws = await client().websockets.chat.create({ bot_id: options.botId });
  const received = [];
  let waiters = [];
  const settle = () => {
    waiters = waiters.filter((waiter) => !waiter());
  };
  ws.onmessage = (event) => {
    const summary = { event_type: event.event_type, id: event.id };
    if (event.data !== undefined) {
      summary.data = { ...event.data };
      if (event.event_type === 'conversation.audio.delta') {
        summary.data.content = Buffer.from(event.data.content, 'base64').length;
      }
    }
    received.push(summary);
    emit({ received: summary });
    settle();
  };
  const failed = new Promise((_, reject) => {
    ws.onerror = (error) => reject(Object.assign(new Error('ws error'), { sdkError: error }));
  });
  let seen = 0;
  const until = (predicate) =>
    Promise.race([
      failed,
      new Promise((resolve) => {
        const waiter = () => {
          while (seen < received.length) {
            const event = received[seen];
            seen += 1;
            if (predicate(event)) {
              resolve(event);
              return true;
            }
          }
          return false;
        };
        if (!waiter()) waiters.push(waiter);
      }),
    ]);
  try {
    await until((event) => event.event_type === 'chat.created');
    for (const step of options.steps) {
      if (step.send) {
        ws.send({ id: randomUUID(), ...step.send });
      } else if (step.stream) {
        const pcm = readFileSync(step.stream);
        const size = ((step.rate * step.chunk_ms) / 1000) * 2;
        for (let start = 0; start < pcm.length; start += size) {
          const delta = pcm.subarray(start, start + size).toString('base64');
          ws.send({ id: randomUUID(), event_type: 'input_audio_buffer.append', data: { delta } });
        }
      } else if (step.wait) {
        await until((event) => event.event_type === step.wait);
      } else if (step.wait_audio) {
        await until((event) => event.event_type === 'conversation.audio.delta');
      }
    }
  } catch (error) {
    if (!error.sdkError) throw error;
    emit({ ws_error: error.sdkError });
  }
  ws.close();
  emit({ done: true });
}

// ------------------------------------------------------------------------- REST and OAuth

// The device flow with the SDK's helpers: the code, a poll before approval (the SDK's
// error for authorization_pending), then, once the test says it approved the code (a
// line on stdin), the polling helper and a refresh.
async function deviceFlow() {
  const config = { baseURL: options.apiBase, clientId: options.clientId };
  const code = await getDeviceCode(config);
  emit({ device_code: code });
  try {
    emit({ unexpected_token: await getDeviceToken({ ...config, deviceCode: code.device_code }) });
  } catch (error) {
    emit({ pending: described(error) });
  }
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === 'approved') break;
  }
  lines.close();
  const token = await getDeviceToken({ ...config, deviceCode: code.device_code, poll: true });
  emit({ token });
  const refreshed = await refreshOAuthToken({ ...config, refreshToken: token.refresh_token });
  emit({ refreshed });
}

async function voices() {
  emit({ voices: await client().audio.voices.list(options.params) });
}

// One SDK call that the simulator is set to refuse; prints the error the SDK made of it.
const CALLS = {
  voices: () => client().audio.voices.list(),
  conversation: () => client().conversations.create({ bot_id: options.botId }),
  device_token: () =>
    getDeviceToken({
      baseURL: options.apiBase,
      clientId: options.clientId,
      deviceCode: options.deviceCode ?? 'no-such-code',
    }),
  refresh: () =>
    refreshOAuthToken({
      baseURL: options.apiBase,
      clientId: options.clientId,
      refreshToken: options.refreshToken ?? 'no-such-token',
    }),
};

async function refused() {
  try {
    emit({ unexpected_result: await CALLS[options.call]() });
  } catch (error) {
    emit({ error: described(error) });
  }
}

const COMMANDS = { chat, 'device-flow': deviceFlow, voices, refused };

const run = COMMANDS[command];
if (!run) {
  process.stderr.write(`unknown command ${command}; one of ${Object.keys(COMMANDS)}\n`);
  process.exit(2);
}
run().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
