// The piece download of @filoz/synapse-core (Filecoin Onchain Cloud):
//   node fetch-piece.mjs BASE_URL PIECE_CID_V2 OUT_FILE
// GET BASE_URL/piece/PIECE_CID_V2, the piece commitment of the bytes recomputed and compared
// with the CID; exit 1 with the reason on any failure.
import { writeFileSync } from 'node:fs'
import * as Piece from '@filoz/synapse-core/piece'

const [base, cid, out] = process.argv.slice(2)
const url = Piece.createPieceUrlPDP({ cid, serviceURL: base.endsWith('/') ? base : base + '/' })
try {
  const bytes = await Piece.downloadAndValidate({ url, expectedPieceCid: cid })
  writeFileSync(out, bytes)
  console.error(`ok: ${bytes.length} bytes from ${url}, piece commitment checked`)
} catch (error) {
  console.error(`FAIL ${error.name}: ${error.message} ${error.details ?? ''}`)
  process.exit(1)
}
