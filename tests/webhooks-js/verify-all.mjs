// Verifies many signed deliveries with the Standard Webhooks library, as a receiver would.
// Input (stdin, JSON): [{secret, id, timestamp, signature, body}]. Prints a JSON array with,
// for each, {payload} when the library accepts it or {error} when it refuses it.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map(({ secret, id, timestamp, signature, body }) => {
  try {
    const payload = new Webhook(secret).verify(body, {
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": signature,
    });
    return { payload };
  } catch (err) {
    return { error: err.message };
  }
});
console.log(JSON.stringify(results));
