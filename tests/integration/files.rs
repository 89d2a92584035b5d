//! Files in and out: input files reach the script's working directory, files it leaves under
//! `outputs/` come back (a plot among them), every limit has its own code, and no path trick
//! (`..`, absolute paths, symlinks, FIFOs, devices, a file still growing) gets past the service
//! or hangs it.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::{Kind, Reply, Service};

fn decode(text: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(
            text.as_str()
                .unwrap_or_else(|| panic!("not base64 text: {text}")),
        )
        .expect("valid base64")
}

/// A Python script from its lines (a Rust string's line continuation would eat the indentation).
fn py(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

fn file<'a>(reply: &'a Reply, path: &str) -> &'a Value {
    let files = reply.body["files"].as_array().expect("a files list");
    files
        .iter()
        .find(|file| file["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {}", reply.body["files"]))
}

async fn input_files_reach_the_script(kind: Kind) {
    let service = Service::start(kind).await;
    let script = py(&[
        "import os",
        "def main():",
        "    with open('data/input.csv') as f:",
        "        text = f.read()",
        "    with open('raw.bin', 'rb') as f:",
        "        raw = list(f.read())",
        "    return {'text': text, 'raw': raw, 'outputs': os.path.isdir('outputs'), \
'listed': sorted(os.listdir('data'))}",
    ]);
    let reply = service
        .execute(json!({
            "script": &script,
            "files": [
                {"path": "data/input.csv", "content": "a,b\n1,2\n"},
                {"path": "raw.bin", "content_base64": "AAEC/w=="},
                {"path": "data/more/é.txt", "content": ""},
            ],
        }))
        .await;
    assert_eq!(
        reply.expect_result(),
        &json!({"text": "a,b\n1,2\n", "raw": [0, 1, 2, 255], "outputs": true,
                "listed": ["input.csv", "more"]})
    );
    // Input files are not outputs, and a script that writes none returns an empty list.
    assert_eq!(reply.body["files"], json!([]), "{}", reply.body);
    service.assert_still_healthy().await;
}

async fn a_plot_comes_back_as_png(kind: Kind) {
    let service = Service::start(kind).await;
    let script = py(&[
        "import matplotlib.pyplot as plt",
        "def main():",
        "    fig, ax = plt.subplots()",
        "    ax.plot([1, 2, 3], [3, 1, 2], label='line')",
        "    ax.set_title('hello')",
        "    ax.legend()",
        "    fig.savefig('outputs/plot.png')",
        "    with open('outputs/table.csv', 'w') as f:",
        "        f.write('x,y\\n1,3\\n')",
        "    return 'plotted'",
    ]);
    let reply = service.run(&script).await;
    assert_eq!(reply.expect_result(), "plotted");
    // No warning about matplotlib's config or cache directory, no cache being built.
    assert_eq!(reply.body["stderr"], "", "{}", reply.body);
    let plot = file(&reply, "outputs/plot.png");
    assert_eq!(plot["content_type"], "image/png");
    let png = decode(&plot["content_base64"]);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert_eq!(plot["bytes"], png.len());
    let table = file(&reply, "outputs/table.csv");
    assert_eq!(table["content_type"], "text/csv");
    assert_eq!(decode(&table["content_base64"]), b"x,y\n1,3\n");
    // Path order, and nothing skipped.
    assert_eq!(reply.body["files"][0]["path"], "outputs/plot.png");
    assert!(reply.body.get("skipped_files").is_none(), "{}", reply.body);
}

async fn path_tricks_are_refused_before_anything_runs(kind: Kind) {
    let service = Service::start(kind).await;
    for path in [
        "../escape.txt",
        "data/../../escape.txt",
        "/etc/cron.d/evil",
        "/tmp/x",
        "a//b",
        "dir/",
        "./x",
        "",
        "nul\u{0}.txt",
    ] {
        let reply = service
            .execute(json!({
                "script": "def main():\n    print('ran')\n",
                "files": [{"path": path, "content": "x"}],
            }))
            .await;
        let body = reply.expect_error(400, "INVALID_FILE_PATH");
        assert!(
            body.get("stdout").is_none(),
            "{path:?}: nothing ran: {body}"
        );
    }
    let clash = json!({
        "script": "def main():\n    return 1\n",
        "files": [{"path": "a", "content": ""}, {"path": "a/b", "content": ""}],
    });
    service
        .execute(clash)
        .await
        .expect_error(400, "INVALID_FILE_PATH");
    service.assert_still_healthy().await;
}

async fn each_input_limit_has_its_code(kind: Kind) {
    let settings = [
        ("MAX_INPUT_FILES", "3"),
        ("MAX_INPUT_FILES_KIB", "2"),
        ("FILE_SIZE_LIMIT_KIB", "1"),
    ];
    let service = Service::start_with(kind, &settings).await;
    let request =
        |files: Vec<Value>| json!({"script": "def main():\n    return 1\n", "files": files});
    let many = (0..4)
        .map(|i| json!({"path": format!("f{i}"), "content": ""}))
        .collect();
    let reply = service.execute(request(many)).await;
    assert_eq!(
        reply.expect_error(413, "TOO_MANY_INPUT_FILES")["limit_files"],
        3
    );
    let big = vec![json!({"path": "big.bin", "content_base64": "A".repeat(1368)})]; // 1026 bytes
    let reply = service.execute(request(big)).await;
    assert_eq!(
        reply.expect_error(413, "INPUT_FILE_TOO_LARGE")["limit_bytes"],
        1024
    );
    let total = (0..3)
        .map(|i| json!({"path": format!("f{i}"), "content": "x".repeat(1000)}))
        .collect();
    let reply = service.execute(request(total)).await;
    assert_eq!(
        reply.expect_error(413, "INPUT_FILES_TOO_LARGE")["limit_bytes"],
        2048
    );
    // Within every limit, the files arrive.
    let fits = (0..2)
        .map(|i| json!({"path": format!("f{i}"), "content": "x".repeat(1000)}))
        .collect();
    assert_eq!(service.execute(request(fits)).await.expect_result(), 1);
}

async fn each_output_limit_has_its_code(kind: Kind) {
    let settings = [("MAX_OUTPUT_FILES", "2"), ("MAX_OUTPUT_FILES_KIB", "4")];
    let service = Service::start_with(kind, &settings).await;
    let writes = |count: usize, size: usize| {
        format!(
            "def main():\n    for i in range({count}):\n        \
             open(f'outputs/f{{i}}.txt', 'w').write('x' * {size})\n    return 'done'\n"
        )
    };
    let reply = service.run(&writes(3, 1)).await;
    let body = reply.expect_error(422, "TOO_MANY_OUTPUT_FILES");
    assert_eq!(body["limit_files"], 2);
    assert!(body.get("files").is_none(), "none returned: {body}");
    let reply = service.run(&writes(2, 3000)).await;
    assert_eq!(
        reply.expect_error(422, "OUTPUT_FILES_TOO_LARGE")["limit_bytes"],
        4096
    );
    let reply = service.run(&writes(2, 2048)).await;
    assert_eq!(reply.expect_result(), "done");
    assert_eq!(reply.body["files"].as_array().map(Vec::len), Some(2));
    // A script that fails returns no files, whatever it wrote.
    let reply = service
        .run("def main():\n    open('outputs/x.txt', 'w').write('x')\n    raise ValueError('no')\n")
        .await;
    assert!(reply.expect_error(422, "EXCEPTION").get("files").is_none());
}

/// Symlinks (to a secret, to an endless device, to a directory), a FIFO no one writes to and a
/// socket: none is followed or opened, each is named as skipped, and the answer is prompt.
async fn links_fifos_sockets_and_devices_are_never_opened(kind: Kind) {
    let service = Service::start(kind).await;
    let script = py(&[
        "import os, socket",
        "def main():",
        "    os.symlink('/etc/passwd', 'outputs/passwd')",
        "    os.symlink('/dev/zero', 'outputs/zero')",
        "    os.symlink('/dev/urandom', 'outputs/urandom')",
        "    os.symlink('/', 'outputs/root')",
        "    os.mkfifo('outputs/pipe')",
        "    s = socket.socket(socket.AF_UNIX)",
        "    s.bind('outputs/sock')",
        "    try:",
        "        os.link('/dev/null', 'outputs/null')",
        "    except OSError:",
        "        pass",
        "    open('outputs/real.txt', 'w').write('real')",
        "    return 'ok'",
    ]);
    let started = Instant::now();
    let reply = service.run(&script).await;
    assert!(started.elapsed() < Duration::from_secs(10), "prompt");
    assert_eq!(reply.expect_result(), "ok");
    let files: Vec<&str> = reply.body["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|file| file["path"].as_str())
        .collect();
    assert_eq!(files, ["outputs/real.txt"], "{}", reply.body);
    let skipped = reply.body["skipped_files"].clone();
    let reason = |path: &str| {
        skipped
            .as_array()
            .and_then(|list| list.iter().find(|entry| entry["path"] == path))
            .map(|entry| entry["reason"].clone())
            .unwrap_or_else(|| panic!("{path} not in {skipped}"))
    };
    for link in ["passwd", "zero", "urandom", "root"] {
        assert_eq!(reason(&format!("outputs/{link}")), "symlink");
    }
    assert_eq!(reason("outputs/pipe"), "fifo");
    assert_eq!(reason("outputs/sock"), "socket");
    service.assert_still_healthy().await;
}

async fn an_outputs_symlink_is_not_followed(kind: Kind) {
    let service = Service::start(kind).await;
    let script = py(&[
        "import os",
        "def main():",
        "    os.rmdir('outputs')",
        "    os.symlink('/etc', 'outputs')",
        "    return 'ok'",
    ]);
    let reply = service.run(&script).await;
    assert_eq!(reply.expect_result(), "ok");
    assert_eq!(reply.body["files"], json!([]));
    assert_eq!(
        reply.body["skipped_files"],
        json!([{"path": "outputs", "reason": "symlink"}])
    );
}

/// A process the script leaves behind keeps appending to an output file (and creating new
/// ones): the answer still comes at once, with each file as far as it had grown, or with the
/// limit's code; never a hang, never more than the limit.
async fn a_file_still_growing_cannot_hang_or_blow_the_answer(kind: Kind) {
    let service = Service::start_with(kind, &[("MAX_OUTPUT_FILES_KIB", "256")]).await;
    let script = py(&[
        "import os",
        "def main():",
        "    if os.fork() == 0:",
        "        with open('outputs/grow.log', 'ab', buffering=0) as f:",
        "            i = 0",
        "            while True:",
        "                f.write(b'x' * 512)",
        "                i += 1",
        "                if i % 64 == 0:",
        "                    open(f'outputs/new{i}.txt', 'w').close()",
        "    import time",
        "    time.sleep(0.2)",
        "    return 'left it running'",
    ]);
    for _ in 0..3 {
        let started = Instant::now();
        let reply = service.run(&script).await;
        assert!(started.elapsed() < Duration::from_secs(10), "prompt");
        if reply.status == 200 {
            let grown = file(&reply, "outputs/grow.log");
            let bytes = grown["bytes"].as_u64().expect("bytes");
            assert!(bytes <= 256 * 1024, "{bytes}");
            assert_eq!(decode(&grown["content_base64"]).len() as u64, bytes);
        } else if reply.body["code"] == "TOO_MANY_OUTPUT_FILES" {
            reply.expect_error(422, "TOO_MANY_OUTPUT_FILES");
        } else {
            reply.expect_error(422, "OUTPUT_FILES_TOO_LARGE");
        }
    }
    service.assert_still_healthy().await;
}

for_each_sandbox!(
    input_files_reach_the_script,
    a_plot_comes_back_as_png,
    path_tricks_are_refused_before_anything_runs,
    each_input_limit_has_its_code,
    each_output_limit_has_its_code,
    links_fifos_sockets_and_devices_are_never_opened,
    an_outputs_symlink_is_not_followed,
    a_file_still_growing_cannot_hang_or_blow_the_answer,
);
