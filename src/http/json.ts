// JSON answers written on plain node:http responses (express's res.json would serialise again and
// copy the text into a Buffer): the text, its length and the same Content-Type as res.json.
import type { ServerResponse } from 'node:http';

export function sendJsonText(res: ServerResponse, status: number, json: string): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(json));
  res.end(json);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendJsonText(res, status, JSON.stringify(body));
}
