// AES-256-GCM encrypt + decrypt through node:crypto (OpenSSL)
const crypto = require('node:crypto');
module.exports.handler = async (event) => {
  const key = crypto.randomBytes(32);
  const iv = crypto.randomBytes(12);
  const data = Buffer.alloc(event.bytes ?? 65536, 7);
  const c = crypto.createCipheriv('aes-256-gcm', key, iv);
  const enc = Buffer.concat([c.update(data), c.final()]);
  const d = crypto.createDecipheriv('aes-256-gcm', key, iv);
  d.setAuthTag(c.getAuthTag());
  const dec = Buffer.concat([d.update(enc), d.final()]);
  return { ok: dec.equals(data), bytes: enc.length };
};
