module.exports.handler = async (event) => event;
