/**
 * How sandbox messages travel between the host and the worker (protocol.ts says why they are taken
 * synchronously): Node's MessagePort with receiveMessageOnPort. The browser bundle swaps in
 * browser/sandbox/transport.ts, where the messages sit in shared memory instead.
 */
import { availableParallelism } from 'node:os';
import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';

/** One end of the channel: posts to the other end, and is read with `take`. */
export type Port = MessagePort;

export function postTo(port: Port, msg: unknown, transfer?: ArrayBuffer[]): void {
  port.postMessage(msg, transfer);
}

/** The next message waiting on `port`, without waiting; undefined when none is there. */
export function take(port: Port): { message: unknown } | undefined {
  return receiveMessageOnPort(port);
}

/** Hardware threads of this machine (the host spins only with one to spare). */
export function hardwareThreads(): number {
  return availableParallelism();
}

/** In the worker: what the host started it with. */
export function startData(): unknown {
  return workerData;
}
