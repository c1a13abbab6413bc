#!/usr/bin/env node
// STAA Serve from Node.js with nothing but proto/staa/v1/explainer.proto: health, GetModelInfo,
// ExplainClip on an encoded clip, StreamExplain on raw RGB24 frames. Prints one JSON document.
//
//   node explain.js --server 127.0.0.1:50051 --clip clip.mp4 \
//       [--frames frames.rgb --width 320 --height 240 --fps 25] [--token-file token.txt] [--model NAME]
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

// The loader options the contract recommends: 64-bit numbers and enums as strings, every field
// present with its default, the name of the oneof member that is set.
const LOADER = { longs: String, enums: String, defaults: true, oneofs: true };
const PROTO = path.join(__dirname, "..", "..", "proto", "staa", "v1", "explainer.proto");
const MESSAGE_BYTES = 64 * 1024 * 1024; // the server's transport limit

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--")) throw new Error(`unexpected argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  if (!args.server || !args.clip) throw new Error("usage: explain.js --server HOST:PORT --clip FILE [--frames FILE --width W --height H --fps F]");
  return args;
}

function summary(explanation) {
  return {
    windowIndex: explanation.windowIndex,
    sourceFrames: explanation.sourceFrames,
    alignedToEnd: explanation.alignedToEnd,
    top: explanation.topk[0],
    heatmaps: Buffer.from(explanation.spatial.data).toString("base64"),
    temporal: explanation.temporal,
    method: explanation.params.method,
  };
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) =>
    client[method](request, metadata, { deadline: Date.now() + 60000 }, (error, reply) => (error ? reject(error) : resolve(reply))));
}

function explainClip(client, clip, model, metadata) {
  return new Promise((resolve, reject) => {
    const windows = [];
    const call = client.ExplainClip({ clip, model }, metadata);
    call.on("data", (response) => { if (response.event === "explanation") windows.push(summary(response.explanation)); });
    call.on("error", reject);
    call.on("end", () => resolve(windows));
  });
}

async function streamFrames(client, frames, width, height, fps, model, metadata) {
  const windows = [];
  let lastAck = null;
  const call = client.StreamExplain(metadata);
  const done = new Promise((resolve, reject) => {
    call.on("data", (response) => {
      if (response.event === "explanation") windows.push(summary(response.explanation));
      if (response.event === "ack") lastAck = response.ack;
    });
    call.on("error", reject);
    call.on("end", resolve);
  });
  const write = (request) => (call.write(request) ? Promise.resolve() : new Promise((resolve) => call.once("drain", resolve)));
  await write({ config: { fps, model } }); // lossless by default: the server slows this sender, never drops
  const size = width * height * 3;
  for (let sequence = 0; sequence * size < frames.length; sequence += 1) {
    const rgb24 = frames.subarray(sequence * size, (sequence + 1) * size);
    await write({ frame: { rgb24, width, height, sequence } });
  }
  call.end();
  await done;
  return { windows, lastAck };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const loaded = grpc.loadPackageDefinition(protoLoader.loadSync([PROTO, path.join(__dirname, "health.proto")], LOADER));
  const options = { "grpc.max_receive_message_length": MESSAGE_BYTES, "grpc.max_send_message_length": MESSAGE_BYTES };
  const credentials = grpc.credentials.createInsecure();
  const explainer = new loaded.staa.v1.VideoExplainer(args.server, credentials, options);
  const health = new loaded.grpc.health.v1.Health(args.server, credentials, options);
  const metadata = new grpc.Metadata();
  if (args["token-file"]) metadata.set("authorization", `Bearer ${fs.readFileSync(args["token-file"], "utf8").trim()}`);

  const result = {};
  result.health = (await unary(health, "Check", { service: "staa.v1.VideoExplainer" }, new grpc.Metadata())).status;
  const model = args.model || ""; // a served model's name or id; empty: the server's default
  const info = await unary(explainer, "GetModelInfo", { model }, metadata);
  result.model = { name: info.name, modelId: info.modelId, numFrames: info.numFrames, labels: info.labels.length };
  result.clip = await explainClip(explainer, fs.readFileSync(args.clip), model, metadata);
  if (args.frames) {
    const streamed = await streamFrames(explainer, fs.readFileSync(args.frames), Number(args.width), Number(args.height),
                                        Number(args.fps || 25), model, metadata);
    result.stream = streamed.windows;
    result.lastAck = streamed.lastAck;
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  explainer.close();
  health.close();
}

main().catch((error) => {
  process.stderr.write(`${error.code !== undefined ? `gRPC status ${error.code}: ` : ""}${error.details || error.message}\n`);
  process.exit(2);
});
