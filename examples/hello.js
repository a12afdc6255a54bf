// spore deploy hello --runtime node --file examples/hello.js && spore invoke hello
module.exports.handler = async (event) => ({ message: `hello ${event.name ?? 'world'}` });
