"""Node's amqplib (another language's client, from npm) on the simamqp server and on RabbitMQ.

amqplib is installed into a temporary folder at test time; without node/npm the test is skipped
with the reason shown.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

SCRIPT = r"""
const amqp = require('amqplib');
(async () => {
  const conn = await amqp.connect(process.argv[2]);
  const ch = await conn.createConfirmChannel();
  const q = process.argv[3];
  await ch.assertQueue(q, {autoDelete: true});
  for (const body of ['one', 'two', 'three']) {
    await new Promise((ok, fail) =>
      ch.sendToQueue(q, Buffer.from(body), {headers: {lang: 'js'}},
                     (err) => err ? fail(err) : ok()));
  }
  const got = [];
  await new Promise((done) => ch.consume(q, (msg) => {
    got.push([msg.content.toString(), msg.properties.headers.lang, msg.fields.redelivered]);
    ch.ack(msg);
    if (got.length === 3) done();
  }));
  let error = null;
  const bad = await conn.createChannel();
  bad.on('error', () => {});
  try { await bad.checkQueue(q + '.missing'); } catch (e) { error = [e.code, e.message]; }
  await conn.close();
  console.log(JSON.stringify({got, error}));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def amqplib_dir(tmp_path_factory):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the amqplib smoke test needs them")
    folder = tmp_path_factory.mktemp("amqplib")
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", "amqplib@0.10"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"npm could not install amqplib: {result.stderr.strip()[-300:]}")
    (folder / "smoke.js").write_text(SCRIPT)
    return folder


def test_amqplib_publish_confirm_consume_and_channel_error(amqplib_dir, amqp_url):
    queue = f"srv.node.{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        ["node", "smoke.js", amqp_url, queue],
        cwd=amqplib_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["got"] == [["one", "js", False], ["two", "js", False], ["three", "js", False]]
    code, message = report["error"]
    assert code == 404
    assert f"NOT_FOUND - no queue '{queue}.missing' in vhost '/'" in message
