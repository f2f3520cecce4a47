// sdk_test.mjs BUILD MODEL -- the official OpenAI Node SDK against gpt2c serve:
// completions (plain and streamed) equal the CLI's text, and the SDK's error
// classes come out of gpt2c's status codes.
import OpenAI from "openai";
import { basename } from "node:path";
import { startServer, cliGenerate, checker } from "./serve.mjs";

const [build, model] = process.argv.slice(2);
const t = checker("openai-sdk");
const srv = await startServer(build, model, ["--api-key", "sk-node", "--slots", "4"]);
try {
  const client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "sk-node", maxRetries: 0 });
  const prompt = "Hello, my name is";
  const want = cliGenerate(build, model, ["-p", prompt, "-n", "10", "--greedy"]).sequences[0].text;
  const r = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0 });
  t.check(r.object === "text_completion" && r.choices[0].text === want, `completion equals the CLI: ${JSON.stringify(r.choices[0].text)} vs ${JSON.stringify(want)}`);
  t.check(r.usage.completion_tokens === 10 || r.choices[0].finish_reason === "stop", "usage");

  const sampled = cliGenerate(build, model, ["-p", prompt, "-n", "12", "--do-sample", "--temperature", "0.7", "--top-k", "0",
                                             "--seed", "7", "--num-return-sequences", "2"]).sequences.map((s) => s.text);
  const stream = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0.7, seed: 7, n: 2, stream: true,
                                                   stream_options: { include_usage: true } });
  const texts = ["", ""];
  let usage = null, finished = 0;
  for await (const chunk of stream) {
    for (const c of chunk.choices) { texts[c.index] += c.text; if (c.finish_reason) finished++; }
    if (chunk.usage) usage = chunk.usage;
  }
  t.check(JSON.stringify(texts) === JSON.stringify(sampled), `streamed n=2 equals the CLI: ${JSON.stringify(texts)} vs ${JSON.stringify(sampled)}`);
  t.check(finished === 2 && usage && usage.prompt_tokens > 0, "stream: finish reasons and the usage chunk");

  const models = await client.models.list();
  t.check(models.data.length === 1 && models.data[0].id === basename(model), "models.list: the folder's name");

  try {
    await new OpenAI({ baseURL: srv.url + "/v1", apiKey: "wrong", maxRetries: 0 }).completions.create({ model, prompt: "x" });
    t.check(false, "a wrong key must fail");
  } catch (e) { t.check(e instanceof OpenAI.AuthenticationError && e.status === 401, "wrong key: AuthenticationError"); }
  try {
    await client.completions.create({ model, prompt: "x", temperature: 5 });
    t.check(false, "temperature 5 must fail");
  } catch (e) { t.check(e instanceof OpenAI.BadRequestError && e.status === 400 && /temperature/.test(e.message), "bad parameter: BadRequestError naming it"); }
  try {
    await client.completions.create({ model: "gpt-4", prompt: "x" });
    t.check(false, "another model must fail");
  } catch (e) { t.check(e instanceof OpenAI.NotFoundError && e.status === 404, "unknown model: NotFoundError"); }
} finally {
  t.check((await srv.stop()) === 0, "server exits 0 on SIGTERM");
}
t.done();
