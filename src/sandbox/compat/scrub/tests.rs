use super::*;
use std::os::unix::fs::PermissionsExt;

fn areas_at(path: &Path) -> Arc<SharedAreas> {
    let area = Area::open(path.to_path_buf()).expect("the area opens");
    Arc::new(SharedAreas::of(vec![area]))
}

fn names_in(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn hostile_trees_are_removed_and_what_was_there_stays() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path();
    std::fs::write(path.join("before"), "kept").expect("write");
    let areas = areas_at(path);
    // A deep chain, a locked directory, a read-only one, odd names, a FIFO, a symlink out.
    let mut deep = path.join("deep");
    for _ in 0..300 {
        deep = deep.join("d");
    }
    std::fs::create_dir_all(&deep).expect("deep");
    let locked = path.join("locked");
    std::fs::create_dir_all(locked.join("inner")).expect("locked");
    std::fs::write(locked.join("inner/file"), "x").expect("write");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let odd = path.join("new\nline \u{1b}[31m");
    std::fs::create_dir(&odd).expect("odd");
    std::fs::write(odd.join("f"), "x").expect("write");
    let fifo = CString::new(path.join("fifo").as_os_str().as_bytes()).expect("path");
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("/etc", path.join("link")).expect("symlink");
    let scrubbed = areas.scrub(&mut Budget::new(Duration::from_secs(30)));
    assert!(matches!(scrubbed, Scrubbed::Clean { .. }), "{scrubbed:?}");
    assert_eq!(names_in(path), ["before"]);
    assert!(Path::new("/etc/passwd").exists(), "a symlink was followed");
}

#[test]
fn a_scrub_stops_at_its_budget_inside_a_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let areas = areas_at(root.path());
    let many = root.path().join("many");
    std::fs::create_dir(&many).expect("mkdir");
    std::fs::write(many.join("0"), "").expect("write");
    for n in 1..20_000 {
        std::fs::hard_link(many.join("0"), many.join(n.to_string())).expect("link");
    }
    let mut small = Budget {
        deadline: Instant::now() + Duration::from_secs(30),
        entries_left: 500,
    };
    let scrubbed = areas.scrub(&mut small);
    assert!(
        matches!(scrubbed, Scrubbed::Unfinished { removed } if removed <= 600),
        "{scrubbed:?}"
    );
    let mut ample = Budget::new(Duration::from_secs(30));
    assert!(matches!(areas.scrub(&mut ample), Scrubbed::Clean { .. }));
    assert!(names_in(root.path()).is_empty());
}

#[tokio::test]
async fn no_turn_is_given_until_an_unfinished_scrub_is_through() {
    let root = tempfile::tempdir().expect("tempdir");
    let areas = areas_at(root.path());
    let turn = areas.take_turn().await.expect("a first turn");
    for n in 0..5_000 {
        std::fs::write(root.path().join(n.to_string()), "").expect("write");
    }
    assert!(matches!(
        turn.end(Duration::ZERO),
        Scrubbed::Unfinished { .. }
    ));
    assert!(!areas.is_clean());
    assert_eq!(areas.take_turn().await.err(), Some(Unclean));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !areas.is_clean() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(areas.is_clean(), "the background scrub did not finish");
    assert!(names_in(root.path()).is_empty());
    let next = areas.take_turn().await.expect("a turn once clean");
    assert!(matches!(
        next.end(Duration::from_secs(1)),
        Scrubbed::Clean { removed: 0 }
    ));
}

#[test]
fn an_unchanged_place_is_not_listed_and_a_changed_one_is_scrubbed() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path();
    let areas = areas_at(path);
    let area = &areas.areas[0];
    std::fs::write(path.join("fresh"), "x").expect("write");
    let scrub = || areas.scrub(&mut Budget::new(Duration::from_secs(30)));
    // Just changed: its change time is too recent for a mark to be trusted.
    assert_eq!(scrub(), Scrubbed::Clean { removed: 1 });
    assert!(
        !area.unchanged_since_clean(),
        "a mark within the margin was trusted"
    );
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(scrub(), Scrubbed::Clean { removed: 0 });
    assert!(
        area.unchanged_since_clean(),
        "a clean, quiet place was not marked"
    );
    // Whatever is written after the mark changes the directory's change time: scrubbed.
    std::fs::write(path.join("later"), "x").expect("write");
    assert!(!area.unchanged_since_clean());
    assert_eq!(scrub(), Scrubbed::Clean { removed: 1 });
    assert_eq!(names_in(path), Vec::<String>::new());
}

#[test]
fn outputs_made_at_start_keep_the_workdir_unchanged_and_are_emptied() {
    let root = tempfile::tempdir().expect("tempdir");
    let workdir = root.path();
    let outputs = with_outputs_dir(workdir).expect("outputs/ made");
    let areas = Arc::new(SharedAreas::of(
        [workdir.to_path_buf(), outputs.clone()]
            .into_iter()
            .filter_map(Area::open)
            .collect(),
    ));
    std::thread::sleep(Duration::from_millis(120));
    let scrub = || areas.scrub(&mut Budget::new(Duration::from_secs(30)));
    assert_eq!(scrub(), Scrubbed::Clean { removed: 0 });
    // What the harness does in every execution, and a script's output file.
    let _ = std::fs::create_dir(&outputs);
    std::fs::write(outputs.join("plot.png"), "x").expect("write");
    assert!(
        areas.areas[0].unchanged_since_clean(),
        "an execution writing only outputs/ moved the working directory"
    );
    assert_eq!(scrub(), Scrubbed::Clean { removed: 1 });
    assert_eq!(names_in(workdir), vec!["outputs".to_owned()]);
    assert_eq!(names_in(&outputs), Vec::<String>::new());
}

#[test]
fn a_start_after_earlier_runs_removes_this_uids_entries_and_keeps_anothers() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path();
    std::fs::write(path.join("left-by-a-script"), "a caller's secret").expect("write");
    std::fs::create_dir_all(path.join("tree/deeper")).expect("mkdir");
    std::fs::write(path.join("tree/deeper/file"), "more").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", path.join("link")).expect("symlink");
    // Another uid's entry (the test runs as root, which may give it away): not this uid's to
    // take.
    let anothers = path.join("another-uids");
    std::fs::write(&anothers, "kept").expect("write");
    std::os::unix::fs::lchown(&anothers, Some(54_321), Some(54_321))
        .expect("chown (the unit tests run as root)");
    remove_own_leftovers(path);
    assert_eq!(names_in(path), vec!["another-uids".to_owned()]);
    assert_eq!(std::fs::read_to_string(&anothers).expect("read"), "kept");
}
