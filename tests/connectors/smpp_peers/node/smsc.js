#!/usr/bin/env node
// An independent SMSC for the gateway's tests, on the npm `smpp` package (node-smpp).
//
//   node smsc.js --port N [--host 127.0.0.1] [--system-id ID --password PW]
//                [--journal FILE] [--receipt-delay-ms 100] [--receipt-tlvs]
//                [--receipt-id-decimal] [--quiet]
//
// It authenticates binds (transmitter, receiver, transceiver), answers every submit_sm
// with a message id and, after a delay, sends a delivery receipt in the standard text
// form (`id:… sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD
// err:000 text:…`) to a session of the same system_id that can receive.
//
// Protocol with the test (one JSON object per line):
//   stdout  events: listening, bind, submit_sm (every field, short_message and UDH in hex,
//           TLVs by hex tag), receipt (its deliver_sm_resp came back), deliver (an
//           injected message was answered), enquire_link, unbind, closed, crashing, pong
//   stdin   commands:
//     {"cmd":"deliver","id":X,"source_addr":..,"destination_addr":..,"short_message":HEX,
//      "esm_class":0,"data_coding":0,"source_addr_ton":1,"source_addr_npi":1,
//      "dest_addr_ton":1,"dest_addr_npi":1,"tlvs":{"0x020c":HEX}}   inject one deliver_sm
//     {"cmd":"throttle","count":N,"status":88}   answer the next N submit_sm with status
//     {"cmd":"crash_after","submits":N}          SIGKILL itself on the Nth next submit_sm,
//                                                 before answering it
//     {"cmd":"close_sessions"}                   drop every TCP connection at once
//     {"cmd":"set","receipt_stat":"UNDELIV","receipt_err":"001","receipt_delay_ms":50}
//     {"cmd":"ping","id":X}                      answered by {"event":"pong","id":X}
//
// With --journal, every accepted message and every acknowledged receipt is appended to
// FILE before the SMSC answers, so a restarted SMSC (same FILE) still sends the receipts
// it owed, exactly like a carrier's store-and-forward centre, and never reuses an id.

'use strict';

const fs = require('fs');
const readline = require('readline');
const smpp = require('smpp');

const ESME_ROK = 0x00;
const ESME_RINVBNDSTS = 0x04;
const ESME_RALYBND = 0x05;
const ESME_RSYSERR = 0x08;
const ESME_RINVPASWD = 0x0e;
const ESME_RINVSYSID = 0x0f;

// The peer records exactly what came over the wire: no decoding filters on the bodies.
for (const command of ['submit_sm', 'deliver_sm', 'data_sm']) {
  const params = smpp.commands[command].params;
  for (const key of ['short_message', 'schedule_delivery_time', 'validity_period']) {
    if (params[key]) delete params[key].filter;
  }
}
delete smpp.tlvs.message_payload.filter;

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1', port: 2775, systemId: 'gateway', password: 'secret', journal: null,
    receiptDelayMs: 100, receiptTlvs: false, receiptIdDecimal: false, quiet: false,
    receiptStat: 'DELIVRD', receiptErr: '000',
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') opts.host = next();
    else if (a === '--port') opts.port = Number(next());
    else if (a === '--system-id') opts.systemId = next();
    else if (a === '--password') opts.password = next();
    else if (a === '--journal') opts.journal = next();
    else if (a === '--receipt-delay-ms') opts.receiptDelayMs = Number(next());
    else if (a === '--receipt-tlvs') opts.receiptTlvs = true;
    else if (a === '--receipt-id-decimal') opts.receiptIdDecimal = true;
    else if (a === '--quiet') opts.quiet = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const opts = parseArgs(process.argv);

function emit(obj) {
  // Writes to a pipe are synchronous on Linux: an event is out before the PDU answering it.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function smppDate(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function tlvsOf(pdu) {
  // Every optional parameter by its hex tag, its value as the raw bytes in hex.
  const out = {};
  for (const key of Object.keys(pdu)) {
    const def = smpp.tlvs[key];
    if (def) {
      const values = def.multiple ? pdu[key] : [pdu[key]];
      for (const v of values) {
        const buf = Buffer.alloc(def.type.size(v));
        def.type.write(v, buf, 0);
        out['0x' + def.id.toString(16).padStart(4, '0')] = buf.toString('hex');
      }
    } else if (/^\d+$/.test(key) && Buffer.isBuffer(pdu[key])) {
      out['0x' + Number(key).toString(16).padStart(4, '0')] = pdu[key].toString('hex');
    }
  }
  return out;
}

function decodeText(body, dataCoding) {
  // node-smpp's own GSM 03.38 and UCS-2 decoders: independent of the gateway's codec.
  if (dataCoding === 8) return smpp.encodings.UCS2.decode(body);
  if (dataCoding === 0 || dataCoding === 1) return smpp.gsmCoder.decode(body, 0x00);
  if (dataCoding === 3) return smpp.encodings.LATIN1.decode(body);
  return null;
}

function splitUdh(sm, esmClass) {
  if (!(esmClass & 0x40) || sm.length === 0) return { udh: null, body: sm };
  const n = sm[0] + 1;
  return { udh: sm.subarray(0, n), body: sm.subarray(n) };
}

// --- the store-and-forward state (journaled) ----------------------------------------
const messages = new Map(); // id -> {id, src, dst, submitDate, text, systemId, state, due}
let nextId = 0x10000000 + Math.floor(Math.random() * 0x1000000);

if (opts.journal && fs.existsSync(opts.journal)) {
  for (const line of fs.readFileSync(opts.journal, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let rec;
    try { rec = JSON.parse(line); } catch (e) { continue; } // a torn last line
    if (rec.n !== undefined) nextId = Math.max(nextId, rec.n + 1);
    if (rec.a !== undefined) {
      messages.set(rec.a, { ...rec.m, id: rec.a, state: 'pending', due: 0 });
    } else if (rec.r !== undefined) {
      messages.delete(rec.r);
    }
  }
}

function journal(rec) {
  if (opts.journal) fs.appendFileSync(opts.journal, JSON.stringify(rec) + '\n');
}

// --- sessions -------------------------------------------------------------------------
let sessionSeq = 0;
const sessions = new Set();
let throttle = { count: 0, status: 0x58 };
let crashAfter = 0;

const server = smpp.createServer((session) => {
  const sid = ++sessionSeq;
  session.gw = { id: sid, bound: null, systemId: null };
  sessions.add(session);

  const bind = (kind) => (pdu) => {
    let status = ESME_ROK;
    if (session.gw.bound) status = ESME_RALYBND;
    else if (pdu.system_id !== opts.systemId) status = ESME_RINVSYSID;
    else if (pdu.password !== opts.password) status = ESME_RINVPASWD;
    emit({
      event: 'bind', session: sid, command: pdu.command, system_id: pdu.system_id,
      password: pdu.password, system_type: pdu.system_type,
      interface_version: pdu.interface_version, addr_ton: pdu.addr_ton,
      addr_npi: pdu.addr_npi, address_range: pdu.address_range, status,
    });
    if (status !== ESME_ROK) {
      session.send(pdu.response({ command_status: status }));
      if (status !== ESME_RALYBND) session.close();
      return;
    }
    session.gw.bound = kind;
    session.gw.systemId = pdu.system_id;
    session.send(pdu.response({ system_id: 'NODESMSC', sc_interface_version: 0x34 }));
    pump();
  };
  session.on('bind_transmitter', bind('tx'));
  session.on('bind_receiver', bind('rx'));
  session.on('bind_transceiver', bind('trx'));

  session.on('submit_sm', (pdu) => {
    if (crashAfter > 0 && --crashAfter === 0) {
      emit({ event: 'crashing', session: sid, sequence_number: pdu.sequence_number });
      process.kill(process.pid, 'SIGKILL');
      return;
    }
    const sm = pdu.short_message || Buffer.alloc(0);
    const { udh, body } = splitUdh(sm, pdu.esm_class);
    const payload = pdu.message_payload;
    let status = ESME_ROK;
    if (session.gw.bound !== 'tx' && session.gw.bound !== 'trx') status = ESME_RINVBNDSTS;
    else if (throttle.count > 0) { throttle.count--; status = throttle.status; }
    const id = status === ESME_ROK ? nextId++ : null;
    const messageId = id === null ? null : id.toString(16);
    const textBytes = payload && payload.length ? payload : body;
    const text = decodeText(textBytes, pdu.data_coding);
    if (!opts.quiet || status !== ESME_ROK) {
      emit({
        event: 'submit_sm', session: sid, sequence_number: pdu.sequence_number, status,
        message_id: messageId, service_type: pdu.service_type,
        source_addr_ton: pdu.source_addr_ton, source_addr_npi: pdu.source_addr_npi,
        source_addr: pdu.source_addr, dest_addr_ton: pdu.dest_addr_ton,
        dest_addr_npi: pdu.dest_addr_npi, destination_addr: pdu.destination_addr,
        esm_class: pdu.esm_class, protocol_id: pdu.protocol_id,
        priority_flag: pdu.priority_flag,
        schedule_delivery_time: pdu.schedule_delivery_time,
        validity_period: pdu.validity_period,
        registered_delivery: pdu.registered_delivery,
        replace_if_present_flag: pdu.replace_if_present_flag,
        data_coding: pdu.data_coding, sm_default_msg_id: pdu.sm_default_msg_id,
        short_message: sm.toString('hex'), udh: udh ? udh.toString('hex') : null,
        body: body.toString('hex'), text, tlvs: tlvsOf(pdu),
      });
    }
    if (status === ESME_ROK && (pdu.registered_delivery & 0x03) !== 0) {
      const m = {
        src: pdu.source_addr, dst: pdu.destination_addr, srcTon: pdu.source_addr_ton,
        srcNpi: pdu.source_addr_npi, dstTon: pdu.dest_addr_ton, dstNpi: pdu.dest_addr_npi,
        submitDate: smppDate(new Date()), text20: printable(text || '').slice(0, 20),
        systemId: session.gw.systemId,
      };
      journal({ a: messageId, n: id, m });
      messages.set(messageId, { ...m, id: messageId, state: 'pending',
        due: Date.now() + opts.receiptDelayMs });
      setTimeout(pump, opts.receiptDelayMs);
    } else if (id !== null) {
      journal({ n: id }); // ids are never reused, even across restarts
    }
    session.send(pdu.response(status === ESME_ROK ? { message_id: messageId }
      : { command_status: status }));
  });

  session.on('data_sm', (pdu) => {
    emit({ event: 'data_sm', session: sid, sequence_number: pdu.sequence_number,
      destination_addr: pdu.destination_addr, tlvs: tlvsOf(pdu) });
    session.send(pdu.response({ command_status: ESME_RSYSERR }));
  });

  session.on('enquire_link', (pdu) => {
    if (!opts.quiet) emit({ event: 'enquire_link', session: sid });
    session.send(pdu.response());
  });

  session.on('unbind', (pdu) => {
    emit({ event: 'unbind', session: sid });
    session.gw.bound = null;
    session.send(pdu.response());
    session.close();
  });

  session.on('unknown', (pdu) => {
    emit({ event: 'unknown', session: sid, command_id: pdu.command_id });
    session.send(pdu.response());
  });

  session.on('error', (err) => {
    emit({ event: 'session_error', session: sid, error: String(err && err.message) });
  });

  session.on('close', () => {
    sessions.delete(session);
    session.gw.bound = null;
    // Receipts sent on this session but never acknowledged are owed again.
    for (const m of messages.values()) {
      if (m.state === 'inflight' && m.session === sid) m.state = 'pending';
    }
    emit({ event: 'closed', session: sid });
  });
});

function printable(text) {
  // The receipt's text: field is ASCII; anything else shows as a dot.
  return text.replace(/[^\x20-\x7e]/g, '.');
}

function receiverFor(systemId) {
  const ready = [...sessions].filter((s) => (s.gw.bound === 'rx' || s.gw.bound === 'trx') &&
    s.gw.systemId === systemId);
  if (!ready.length) return null;
  return ready[Math.floor(Math.random() * ready.length)];
}

function pump() {
  // Send every receipt that is due to a session that can take it.
  const now = Date.now();
  let next = Infinity;
  for (const m of messages.values()) {
    if (m.state !== 'pending') continue;
    if (m.due > now) { next = Math.min(next, m.due); continue; }
    const session = receiverFor(m.systemId);
    if (!session) continue; // sent when a receiver binds (pump runs on every bind)
    sendReceipt(session, m);
  }
  if (next !== Infinity) setTimeout(pump, Math.max(1, next - now));
}

function sendReceipt(session, m) {
  const done = smppDate(new Date());
  const shownId = opts.receiptIdDecimal ? String(parseInt(m.id, 16)) : m.id;
  const text = `id:${shownId} sub:001 dlvrd:${opts.receiptStat === 'DELIVRD' ? '001' : '000'} ` +
    `submit date:${m.submitDate} done date:${done} stat:${opts.receiptStat} ` +
    `err:${opts.receiptErr} text:${m.text20}`;
  const fields = {
    source_addr_ton: m.dstTon, source_addr_npi: m.dstNpi, source_addr: m.dst,
    dest_addr_ton: m.srcTon, dest_addr_npi: m.srcNpi, destination_addr: m.src,
    esm_class: 0x04, data_coding: 0, short_message: Buffer.from(text, 'ascii'),
  };
  if (opts.receiptTlvs) {
    fields.receipted_message_id = m.id;
    fields.message_state = opts.receiptStat === 'DELIVRD' ? 2 : 5;
  }
  m.state = 'inflight';
  m.session = session.gw.id;
  const ok = session.deliver_sm(fields, (resp) => {
    emit({ event: 'receipt', session: session.gw.id, message_id: m.id, text,
      status: resp.command_status });
    if (resp.command_status === ESME_ROK) {
      journal({ r: m.id });
      messages.delete(m.id);
    } else {
      m.state = 'pending';
      m.due = Date.now() + 500;
      setTimeout(pump, 500);
    }
  });
  if (!ok) m.state = 'pending';
}

function inject(cmd, deadline = Date.now() + 10000) {
  const session = [...sessions].find((s) => s.gw.bound === 'rx' || s.gw.bound === 'trx');
  if (!session) {
    // Like a carrier, hold the message a while for a receiver to bind.
    if (Date.now() < deadline) setTimeout(() => inject(cmd, deadline), 10);
    else emit({ event: 'deliver', id: cmd.id, error: 'no bound receiver' });
    return;
  }
  const fields = {
    service_type: cmd.service_type || '',
    source_addr_ton: cmd.source_addr_ton ?? 1, source_addr_npi: cmd.source_addr_npi ?? 1,
    source_addr: cmd.source_addr, dest_addr_ton: cmd.dest_addr_ton ?? 1,
    dest_addr_npi: cmd.dest_addr_npi ?? 1, destination_addr: cmd.destination_addr,
    esm_class: cmd.esm_class || 0, data_coding: cmd.data_coding || 0,
    short_message: Buffer.from(cmd.short_message || '', 'hex'),
  };
  for (const [tag, hex] of Object.entries(cmd.tlvs || {})) {
    const id = Number(tag);
    const def = smpp.tlvsById[id];
    const value = Buffer.from(hex, 'hex');
    if (def) fields[def.tag] = def.type.read(value, 0, value.length);
    else fields[id] = value;
  }
  session.deliver_sm(fields, (resp) => {
    emit({ event: 'deliver', id: cmd.id, session: session.gw.id,
      status: resp.command_status });
  });
}

function control(line) {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) {
    emit({ event: 'error', error: `bad control line: ${line}` });
    return;
  }
  switch (cmd.cmd) {
    case 'deliver': inject(cmd); break;
    case 'throttle': throttle = { count: cmd.count || 1, status: cmd.status || 0x58 }; break;
    case 'crash_after': crashAfter = cmd.submits || 1; break;
    case 'close_sessions': for (const s of sessions) s.destroy(); break;
    case 'set':
      if (cmd.receipt_stat !== undefined) opts.receiptStat = cmd.receipt_stat;
      if (cmd.receipt_err !== undefined) opts.receiptErr = cmd.receipt_err;
      if (cmd.receipt_delay_ms !== undefined) opts.receiptDelayMs = cmd.receipt_delay_ms;
      if (cmd.receipt_tlvs !== undefined) opts.receiptTlvs = !!cmd.receipt_tlvs;
      break;
    case 'ping': break;
    default: emit({ event: 'error', error: `unknown command ${cmd.cmd}` }); return;
  }
  emit({ event: 'pong', id: cmd.id ?? null, cmd: cmd.cmd });
}

readline.createInterface({ input: process.stdin }).on('line', control);
// The test ends us by closing stdin (or by a signal): never outlive the test.
process.stdin.on('end', () => process.exit(0));

server.on('error', (err) => {
  emit({ event: 'error', error: String(err.message) });
  process.exit(3);
});
server.listen(opts.port, opts.host, () => {
  emit({ event: 'listening', port: server.address().port, pid: process.pid,
    pending_receipts: messages.size });
  pump();
});
