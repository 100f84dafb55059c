// Preloaded into artillery by loadtest/run (NODE_OPTIONS=--require): artillery 2.0.21 creates a
// PostHog client and posts an event to app.posthog.com on every run, even with
// ARTILLERY_DISABLE_TELEMETRY set (node_modules/artillery/lib/telemetry.js sends a reduced event
// then). Our load tests send traffic to 127.0.0.1 only, so the client is replaced by one that
// sends nothing. Without network the call also holds every run open for about 12 seconds.
'use strict';

const Module = require('module');

class SilentPostHog {
  capture() {}

  async shutdownAsync() {}
}

const load = Module._load;
Module._load = function loadWithoutPostHog(request, ...rest) {
  if (request === 'posthog-node') return { PostHog: SilentPostHog };
  return load.call(this, request, ...rest);
};
