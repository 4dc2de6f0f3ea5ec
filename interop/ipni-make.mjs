// Makes and signs an IPNI advertisement with @web3-storage/ipni (a library nobody at Nelumbo
// wrote): an ed25519 identity, a previous link, entries, a context ID and an HTTP provider.
// Prints JSON: the peer ID, the advertisement's DAG-JSON bytes (base64) and its CID.
import { CID } from 'multiformats/cid'
import * as Block from 'multiformats/block'
import { sha256 } from 'multiformats/hashes/sha2'
import * as dagJson from '@ipld/dag-json'
import { createEd25519PeerId } from '@libp2p/peer-id-factory'
import { Provider, Advertisement } from '@web3-storage/ipni'

const peerId = await createEd25519PeerId()
const provider = new Provider({
  protocol: 'http',
  addresses: ['/ip4/127.0.0.1/tcp/24080/http', '/ip4/127.0.0.1/tcp/24001'],
  peerId
})
const advertisement = new Advertisement({
  providers: [provider],
  previous: CID.parse('baguqeeraaf3ck6ibwmsmkfc3snmqozfhnhxdk4jtsvurgynfauajlpksgzlq'),
  entries: CID.parse('baguqeera4vd5tybgxaub4elwag6v7yhswhflfyopogr7r32b7dpt5mqfmmoq'),
  context: new Uint8Array([0x82, 0x01, 0x02, 0x03]),
  remove: process.argv[2] === 'remove'
})
const value = await advertisement.encodeAndSign()
const block = await Block.encode({ value, codec: dagJson, hasher: sha256 })
console.log(JSON.stringify({
  peerId: peerId.toString(),
  ad: Buffer.from(block.bytes).toString('base64'),
  cid: block.cid.toString()
}))
