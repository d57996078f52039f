// Verifies one signed delivery with the Standard Webhooks library, as a receiver would.
// Input (stdin, JSON): {secret, id, timestamp, signature, body}. Prints "verified" and exits 0,
// or prints why not and exits 1.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, id, timestamp, signature, body } = JSON.parse(input);
try {
  const payload = new Webhook(secret).verify(body, {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature,
  });
  console.log("verified", JSON.stringify(payload));
} catch (err) {
  console.log("refused:", err.message);
  process.exit(1);
}
