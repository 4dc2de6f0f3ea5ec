// Verifies an IPNI advertisement (DAG-JSON bytes in the file named by argv[2]) the way
// @web3-storage/ipni signs one: the libp2p envelope opened and certified by js-libp2p's
// @libp2p/peer-record for domain "indexer" and payload type /indexer/ingest/adSignature, its
// payload equal to the SHA-256 multihash of the library's own signable bytes for the
// advertisement's fields, and its key the Provider's peer ID. Prints "ok" or exits 1 with why.
import fs from 'node:fs'
import * as dagJson from '@ipld/dag-json'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { RecordEnvelope } from '@libp2p/peer-record'
import { Provider, Advertisement } from '@web3-storage/ipni'
import { AD_SIG_CODEC, SIG_DOMAIN, hashSignableBytes } from '@web3-storage/ipni/advertisement.js'

function fail (why) {
  console.error(`not valid: ${why}`)
  process.exit(1)
}

const ad = dagJson.decode(fs.readFileSync(process.argv[2]))
if (ad.ExtendedProvider) fail('ExtendedProvider is not expected here')
const envelope = await RecordEnvelope.openAndCertify(ad.Signature, SIG_DOMAIN)
  .catch(e => fail(`the envelope does not verify: ${e.message}`))
if (Buffer.compare(Buffer.from(envelope.payloadType), Buffer.from(AD_SIG_CODEC)) !== 0) {
  fail(`payload type ${Buffer.from(envelope.payloadType).toString()}`)
}
const signer = peerIdFromPublicKey(envelope.publicKey)
if (signer.toString() !== ad.Provider) {
  fail(`signed by ${signer}, not by the provider ${ad.Provider}`)
}
// The library's signable bytes, for these fields (its Provider carries one transport's
// metadata; the advertisement's own metadata bytes are signed as they are).
const provider = new Provider({ protocol: 'http', addresses: ad.Addresses, peerId: signer })
provider.encodeMetadata = () => ad.Metadata
const rebuilt = new Advertisement({
  providers: [provider],
  previous: ad.PreviousID ?? null,
  entries: ad.Entries,
  context: ad.ContextID,
  remove: ad.IsRm
})
const expected = await hashSignableBytes(rebuilt.signableBytes())
if (Buffer.compare(Buffer.from(expected), Buffer.from(envelope.payload)) !== 0) {
  fail('the signed payload is not the hash of these fields')
}
console.log('ok')
