// What Grafana does with one Live channel's packets before a panel sees them, with @grafana/data's
// own StreamingDataFrame, step by step as Grafana does it:
//
// - grafana/grafana public/app/features/live/centrifuge/LiveDataStream.ts (the worker side): one
//   frame buffer per channel, StreamingDataFrame.empty(defaultStreamingFrameOptions) (service.ts:
//   maxLength 100, maxDelta Infinity, Append), resized to the request's buffer options
//   (getStreamingFrameOptions(options.buffer)); the query's frame (options.frame) is processed
//   first; every packet is buffer.push(msg). With the Replace action only the last packet goes on:
//   a full frame (serialize(…, buffer, { maxLength: packetInfo.length })) for the first message and
//   whenever the schema changed, else the last packet's values (getValuesFromLastPacket).
// - public/app/features/live/live.ts (GrafanaLiveService.getDataStream, the main thread): a full
//   frame becomes StreamingDataFrame.deserialize(frame), values are buffer.pushNewValues(values).
// - DataSourceWithBackend (npm @grafana/runtime, toStreamingDataResponse) opens one such stream per
//   frame that carries meta.channel, with the datasource's streamOptionsProvider as buffer options
//   and dataFrameToJSON(frame) as options.frame; runRequest (public/app/features/query/state/
//   runRequest.ts, processResponsePacket) keeps the latest response of each stream, so the panel
//   holds the latest frame of every channel.
import { DataFrameJSON, StreamingDataFrame, StreamingFrameAction, StreamingFrameOptions } from '@grafana/data';

const DEFAULT_STREAMING_FRAME_OPTIONS: Readonly<StreamingFrameOptions> = {
  maxLength: 100,
  maxDelta: Infinity,
  action: StreamingFrameAction.Append,
};

export class LiveChannel {
  private readonly worker: StreamingDataFrame;
  private readonly buffer: StreamingFrameOptions;
  private readonly lastPacketOnly: boolean;
  private sentFull = false;
  /** What the panel holds for this channel (GrafanaLiveService's buffer). */
  frame?: StreamingDataFrame;
  /** Schema packets seen (each replaces the frame on the main thread). */
  schemaPackets = 0;

  constructor(bufferOptions: Partial<StreamingFrameOptions>, queryFrame?: DataFrameJSON) {
    this.worker = StreamingDataFrame.empty(DEFAULT_STREAMING_FRAME_OPTIONS);
    // getStreamingFrameOptions(options.buffer): the options empty() resolves them to
    this.buffer = StreamingDataFrame.empty(bufferOptions).getOptions();
    if (this.worker.needsResizing(this.buffer)) {
      this.worker.resize(this.buffer);
    }
    this.lastPacketOnly = bufferOptions.action === StreamingFrameAction.Replace;
    if (!this.lastPacketOnly) {
      throw new Error('this model follows LiveDataStream for the Replace action only');
    }
    if (queryFrame) {
      this.push(queryFrame);
    }
  }

  /** One packet from the channel (a StreamPacket's JSON), through to the panel's frame. */
  push(msg: DataFrameJSON): StreamingDataFrame {
    const info = this.worker.push(msg);
    if (!this.sentFull || info.schemaChanged || !this.frame) {
      const full = this.worker.serialize(undefined, this.buffer, { maxLength: this.worker.packetInfo.length });
      this.frame = StreamingDataFrame.deserialize(full);
      this.sentFull = true;
      this.schemaPackets++;
    } else {
      this.frame.pushNewValues(this.worker.getValuesFromLastPacket());
    }
    return this.frame;
  }
}
