import {createServer} from 'node:net'

/**
 * The local provisioner's default workload: listens on 127.0.0.1:$PORT, greets every connection with a banner and
 * answers one line: `welcome` when it is the instance's password, `denied` otherwise. Run as its own process.
 */

const port = Number(process.env.PORT)
if (!Number.isInteger(port) || port < 1 || port > 65_535) {
  console.error('banner-service: PORT must be a TCP port number')
  process.exit(2)
}
const name = process.env.OUTPOST_INSTANCE ?? 'outpost-local'
const password = process.env.OUTPOST_PASSWORD

const server = createServer((socket) => {
  socket.on('error', () => socket.destroy())
  socket.setEncoding('utf8')
  socket.setTimeout(30_000, () => socket.destroy())
  socket.write(`${name} ready\n`)
  let received = ''
  socket.on('data', (chunk: string) => {
    received += chunk
    const newline = received.indexOf('\n')
    if (newline === -1) return
    const line = received.slice(0, newline).replace(/\r$/, '')
    socket.end(password !== undefined && line === password ? 'welcome\n' : 'denied\n')
  })
})
server.on('error', (error) => {
  console.error(`banner-service: ${error.message}`)
  process.exit(1)
})
server.listen(port, '127.0.0.1')

for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => server.close(() => process.exit(0)))
