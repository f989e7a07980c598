import { Packr } from 'msgpackr'
import { randomBytes } from 'node:crypto'
const packr = new Packr({ useRecords: false, mapsAsObjects: true })
const v = randomBytes(1024)
const ops = Array.from({ length: 600 }, (_, i) => ({ type: 'put', key: Buffer.from(`key-${String(i).padStart(6, '0')}`), value: v }))
const flat = []; for (const op of ops) { flat.push(op.key, op.value) }
const N = 2000
function t(name, f) { const t0 = process.hrtime.bigint(); let s = 0; for (let i = 0; i < N; i++) s += f().length; console.log(name, (Number(process.hrtime.bigint() - t0) / N / 600).toFixed(0), 'ns/op') }
for (let r = 0; r < 3; r++) {
  t('objects', () => packr.pack({ t: 'part', id: 1, part: { generation: 'abc', from: 1, to: 2, ops } }))
  t('flat', () => packr.pack({ t: 'part', id: 1, part: { generation: 'abc', from: 1, to: 2, ops: flat } }))
  t('unpack objects', () => packr.unpack(packr.pack({ ops })).ops)
  t('unpack flat', () => packr.unpack(packr.pack({ ops: flat })).ops)
}
