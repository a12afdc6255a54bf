// Prints at its module init (once, in its seed) and at every call: `spore logs say` shows both.
console.log('say: module loaded');

module.exports.handler = async (event) => {
  const name = (event && event.name) || 'world';
  console.log(`say: hello ${name}`);
  return { said: `hello ${name}` };
};
