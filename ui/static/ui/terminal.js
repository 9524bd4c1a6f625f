// The device console's terminal (ui/device_console.html): xterm.js on the user API's console
// WebSocket, /ws/v1/devices/{name}/console, subprotocol v5.channel.k8s.io, as `flightctl
// console` speaks it (flightctl/cli/client/commands/console.py). Every message is one frame:
// a channel byte, then the data. Keystrokes go out on 0 (stdin), the terminal's size on 4
// (resize, {"Width", "Height"}); 1 and 2 (stdout, stderr) are written to the terminal, 3 is
// the session's exit Status. The browser sends its session cookie itself (same origin); a
// refusal arrives as close code 4000 + the HTTP status, its message as the close reason.
"use strict";
(function () {
  const STDIN = 0, STDOUT = 1, STDERR = 2, ERROR = 3, RESIZE = 4;
  const box = document.getElementById("terminal");
  const status = document.getElementById("console-status");
  const size = document.getElementById("console-size");
  const say = (state, text) => { status.dataset.state = state; status.textContent = text; };

  const term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const showSize = () => { size.textContent = `${term.cols}×${term.rows}`;
    box.dataset.size = `${term.rows} ${term.cols}`; };
  showSize();

  const metadata = { tty: true, term: "xterm-256color",
    initialDimensions: { Width: term.cols, Height: term.rows } };
  const query = new URLSearchParams({ metadata: JSON.stringify(metadata) });
  if (box.dataset.org) query.set("org_id", box.dataset.org);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}${box.dataset.path}?${query}`,
    ["v5.channel.k8s.io"]);
  socket.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  let exitStatus = null, userClosed = false;

  function send(channel, bytes) {
    if (socket.readyState !== WebSocket.OPEN) return;
    const frame = new Uint8Array(bytes.length + 1);
    frame[0] = channel;
    frame.set(bytes, 1);
    socket.send(frame);
  }
  const sendSize = () => send(RESIZE, encoder.encode(
    JSON.stringify({ Width: term.cols, Height: term.rows })));

  // The exit Status of channel 3, in words ("exit status 3").
  function describe(payload) {
    let body = {};
    try { body = JSON.parse(new TextDecoder().decode(payload)); } catch (e) { /* unreadable */ }
    if (body.status === "Success") return "exit status 0";
    const causes = (body.details && body.details.causes) || [];
    const code = causes.find((c) => c.reason === "ExitCode");
    if (body.reason === "NonZeroExitCode" && code) return `exit status ${code.message}`;
    return body.message || "failed";
  }

  term.onData((data) => send(STDIN, encoder.encode(data)));
  term.onBinary((data) => send(STDIN, Uint8Array.from(data, (c) => c.charCodeAt(0) & 255)));
  term.onResize(() => { showSize(); sendSize(); });
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; fit.fit(); });
  });

  socket.onopen = () => {
    say("connected", `Connected to ${box.dataset.device}`);
    sendSize(); // the window may have changed while the device was joining
    term.focus();
  };
  socket.onmessage = (event) => {
    const data = new Uint8Array(event.data);
    if (!data.length) return;
    const channel = data[0], payload = data.subarray(1);
    if (channel === STDOUT || channel === STDERR) term.write(payload);
    else if (channel === ERROR) exitStatus = describe(payload);
  };
  const disconnect = document.getElementById("console-disconnect");
  socket.onclose = (event) => {
    disconnect.disabled = true;
    term.options.disableStdin = true;
    term.options.cursorBlink = false;
    if (event.code >= 4000 && event.code < 5000) {
      say("refused", `Refused (${event.code - 4000}): ${event.reason}`);
    } else if (exitStatus !== null) {
      say("closed", `Session ended: ${exitStatus}`);
    } else if (userClosed) {
      say("closed", "Disconnected");
    } else if (event.code === 1000) {
      say("closed", `Session ended${event.reason ? ": " + event.reason : ""}`);
    } else {
      say("lost", `Connection lost (${event.code}${event.reason ? ": " + event.reason : ""})`);
    }
  };
  disconnect.addEventListener("click", () => {
    userClosed = true;
    socket.close(1000);
  });
})();
