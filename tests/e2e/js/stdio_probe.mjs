// An editor's view of `pollama stdio`: vscode-jsonrpc over the child's stdin/stdout (LSP
// framing), as a VS Code extension talks to a language server. Prints one JSON summary.
import { spawn } from 'node:child_process'
import rpc from 'vscode-jsonrpc/node.js'

const [python, ...args] = process.argv.slice(2)
const child = spawn(python, ['-m', 'pollama.cli.main', 'stdio', ...args],
                    { stdio: ['pipe', 'pipe', 'inherit'] })
const conn = rpc.createMessageConnection(new rpc.StreamMessageReader(child.stdout),
                                         new rpc.StreamMessageWriter(child.stdin))
const chunks = {}
conn.onNotification('stream', ({ id, chunk }) => {
  (chunks[id] ??= []).push(chunk.message.content)
})
conn.listen()

const out = {}
out.version = await conn.sendRequest('version', {})
const final = await conn.sendRequest('chat', {
  model: 'smol', messages: [{ role: 'user', content: 'Say hello.' }],
  options: { num_predict: 8, temperature: 0 } })
out.chat = { done: final.done, eval_count: final.eval_count,
             streamed: Object.values(chunks).flat().join('') }
try {
  await conn.sendRequest('no_such_method', {})
} catch (e) {
  out.unknown = e.code
}
try {
  await conn.sendRequest('show', { model: 'nope' })
} catch (e) {
  out.missing = { code: e.code, message: e.message, data: e.data }
}
// Cancel through vscode-jsonrpc's own CancellationToken ($/cancelRequest on the wire).
const source = new rpc.CancellationTokenSource()
const long = conn.sendRequest('chat', {
  model: 'smol', messages: [{ role: 'user', content: 'Tell a very long story.' }],
  // greedy: this prompt then runs past 600 tokens (seconds), so the cancel lands mid-way; a
  // sampled answer could end before it (a CI failure)
  options: { num_predict: 100000, temperature: 0 } }, source.token)
setTimeout(() => source.cancel(), 1000)
try {
  await long
  out.cancel = 'completed'
} catch (e) {
  out.cancel = e.code
}
conn.dispose()
child.stdin.end()
child.on('exit', (code) => {
  out.exit = code
  console.log(JSON.stringify(out))
})
