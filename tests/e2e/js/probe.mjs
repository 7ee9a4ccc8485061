// The official `ollama` JavaScript client against a pollama server: argv[2] is the server URL.
// Prints one JSON object of what each call returned; tests/e2e/test_js_client.py checks it.
import { Ollama } from 'ollama'

const o = new Ollama({ host: process.argv[2] })
const opts = { temperature: 0, num_predict: 8 }
const out = {}
out.list = (await o.list()).models.map(m => m.name)
const g = await o.generate({ model: 'smol', prompt: 'Say hi.', options: opts })
out.generate = { response: g.response, done: g.done, eval_count: g.eval_count, context: g.context.length }
let streamed = ''
let chunks = 0
for await (const part of await o.chat({ model: 'smol', stream: true, options: opts,
                                        messages: [{ role: 'user', content: 'Hi' }] })) {
  streamed += part.message.content
  chunks += 1
}
out.chat_stream = { text: streamed, chunks }
const e = await o.embed({ model: 'smol', input: ['a', 'b'] })
out.embed = e.embeddings.map(v => v.length)
const schema = { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] }
const j = await o.chat({ model: 'smol', format: schema, options: { temperature: 0 },
                         messages: [{ role: 'user', content: 'Give a number a.' }] })
out.format = JSON.parse(j.message.content)
out.show = (await o.show({ model: 'smol' })).capabilities
out.ps = (await o.ps()).models.map(m => m.name)
try {
  await o.chat({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })
  out.error = null
} catch (err) {
  out.error = { status: err.status_code, error: err.error }
}
console.log(JSON.stringify(out))
