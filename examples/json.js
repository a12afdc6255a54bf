// JSON serde: parse and re-serialize a document built from the event
module.exports.handler = async (event) => {
  const n = event.n ?? 200;
  const doc = { items: Array.from({ length: n }, (_, i) => ({ id: i, name: `item-${i}`, tags: ['a', 'b', 'c'], score: i * 1.5 })) };
  const back = JSON.parse(JSON.stringify(doc));
  return { items: back.items.length, bytes: JSON.stringify(back).length };
};
