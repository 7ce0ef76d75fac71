// Answers / with the release and a config var.
const http = require("http");
const port = parseInt(process.env.PORT || "3000", 10);
http.createServer((req, res) => {
  const body = `Hello from Node.js (release ${process.env.APP_VERSION || "unknown"}) ${process.env.GREETING || ""}\n`;
  res.writeHead(200, {"Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body)});
  res.end(body);
}).listen(port, "0.0.0.0");
