//! On-disk compatibility: a data directory written before the namespace
//! registry and the change log (`tests/fixtures/data-v1`, see its README) opens
//! with today's code, reads back what was acknowledged, and takes new writes.

use memoryd::{Access, NewMessage, Role, SearchRequest};

use crate::common::{open, repo_path, rt};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_data_directory_of_the_previous_format_opens_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_path("tests/fixtures/data-v1"), dir.path());
    let me = Access::full();
    rt().block_on(async {
        let e = open(dir.path());
        let report = e.check(&me).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        let listed: Vec<(String, usize, usize)> = e
            .namespaces(&me)
            .into_iter()
            .map(|n| (n.name, n.messages, n.summaries))
            .collect();
        assert_eq!(
            listed,
            [("compat".to_string(), 5, 1), ("other".to_string(), 1, 0)]
        );
        let hits = e
            .search(
                &me,
                "compat",
                SearchRequest::text("what dog did Ana adopt?", 3),
            )
            .await
            .unwrap()
            .hits;
        assert!(hits.iter().any(|h| h.text().contains("Pixel")), "{hits:?}");
        let page = e.list(&me, "compat", None, 10).await.unwrap();
        assert_eq!(page.messages.len(), 5);
        assert_eq!(
            page.messages[0].content,
            "I adopted a greyhound named Pixel"
        );
        assert_eq!(page.messages[3].metadata["topic"], "family");
        assert_eq!(
            e.summaries(&me, "compat").await.unwrap()[0]
                .source_ids
                .len(),
            4
        );
        // Only the message written after the summary waits for one (the first
        // message of that store has row 0).
        assert_eq!(e.unsummarized(&me, "compat"), 1);
        // The change log starts with the first write under the new format.
        assert!(e.changes(&me, "compat", 0, 10).await.unwrap().is_empty());
        let added = e
            .add(
                &me,
                "compat",
                NewMessage::new(Role::User, "New turn after the upgrade"),
            )
            .await
            .unwrap();
        let log = e.changes(&me, "compat", 0, 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].seq, log[0].ids[0].as_str()), (1, added.id.as_str()));
        assert_eq!(e.delete_namespace(&me, "other").await.unwrap(), 1);
    });
    rt().block_on(async {
        let e = open(dir.path());
        assert!(e.check(&me).await.unwrap().is_ok());
        let names: Vec<String> = e.namespaces(&me).into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["compat"]);
        assert_eq!(
            e.list(&me, "compat", None, 10)
                .await
                .unwrap()
                .messages
                .len(),
            6
        );
        assert_eq!(e.unsummarized(&me, "compat"), 2);
    });
}
