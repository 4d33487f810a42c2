use super::*;
use proptest::prelude::*;

fn sig() -> Signature {
    Signature {
        input_name: "input__0".into(),
        datatype: Datatype::Fp32,
        item_shape: vec![2, 2],
        max_batch: 4,
    }
}

fn json(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[test]
fn decodes_flat_nested_and_single_item_json() {
    let flat = json(
        serde_json::json!({"id": "r1", "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [2, 2, 2], "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}),
    );
    let r = decode(&flat, None, &sig()).unwrap();
    assert_eq!((r.id.as_deref(), r.items), (Some("r1"), 2));
    assert_eq!(
        r.data,
        TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    );
    let nested = json(
        serde_json::json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 2, 2], "data": [[[1.5, 2], [3, 4]]]}], "outputs": [{"name": "output__0"}]}),
    );
    let r = decode(&nested, None, &sig()).unwrap();
    assert_eq!(r.items, 1);
    assert_eq!(
        r.outputs,
        vec![RequestedOutput {
            name: "output__0".into(),
            binary: None
        }]
    );
    assert!(!r.binary_output("output__0"));
    let single = json(
        serde_json::json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4], "parameters": {}}]}),
    );
    assert_eq!(decode(&single, None, &sig()).unwrap().items, 1);
}

#[test]
fn decodes_the_binary_tensor_extension() {
    let head = json(
        serde_json::json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 2, 2], "parameters": {"binary_data_size": 16}}]}),
    );
    let mut body = head.clone();
    for x in [1.0f32, 2.0, 3.0, 4.0] {
        body.extend_from_slice(&x.to_le_bytes());
    }
    let r = decode(&body, Some(head.len()), &sig()).unwrap();
    assert_eq!(r.data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    // Declared size beyond what was sent, trailing bytes, NaN in binary.
    assert!(
        decode(&body[..body.len() - 4], Some(head.len()), &sig())
            .unwrap_err()
            .message
            .contains("exceeds")
    );
    let mut extra = body.clone();
    extra.extend_from_slice(&[0, 0, 0, 0]);
    assert!(
        decode(&extra, Some(head.len()), &sig())
            .unwrap_err()
            .message
            .contains("trailing")
    );
    let mut nan = head.clone();
    for x in [1.0f32, f32::NAN, 3.0, 4.0] {
        nan.extend_from_slice(&x.to_le_bytes());
    }
    assert!(
        decode(&nan, Some(head.len()), &sig())
            .unwrap_err()
            .message
            .contains("NaN")
    );
    assert!(
        decode(&body, Some(body.len() + 1), &sig())
            .unwrap_err()
            .message
            .contains("Inference-Header-Content-Length")
    );
}

#[test]
fn binary_outputs_follow_the_extensions_precedence() {
    let with = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 2, 2], "data": [1, 2, 3, 4]}]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        decode(&json(v), None, &sig()).unwrap()
    };
    let binary = |r: &InferRequest| r.binary_output("output__0");
    assert!(!binary(&with(serde_json::json!({}))));
    assert!(binary(&with(
        serde_json::json!({"parameters": {"binary_data_output": true}})
    )));
    assert!(binary(&with(
        serde_json::json!({"outputs": [{"name": "output__0", "parameters": {"binary_data": true}}]})
    )));
    // The output's own parameter wins over the request's, either way.
    assert!(!binary(&with(
        serde_json::json!({"parameters": {"binary_data_output": true}, "outputs": [{"name": "output__0", "parameters": {"binary_data": false}}]})
    )));
    assert!(binary(&with(
        serde_json::json!({"parameters": {"binary_data_output": false}, "outputs": [{"name": "output__0", "parameters": {"binary_data": true}}]})
    )));
    // Named without a preference: the request's default applies.
    assert!(binary(&with(
        serde_json::json!({"parameters": {"binary_data_output": true}, "outputs": [{"name": "output__0"}]})
    )));
}

#[test]
fn responses_encode_as_json_or_as_a_header_followed_by_bytes() {
    let response = |binary: bool| InferResponse {
        model_name: "m".into(),
        model_version: "1".into(),
        id: Some("r9".into()),
        outputs: vec![OutputTensor {
            name: "output__0".into(),
            shape: vec![1, 3],
            data: vec![1.5, -2.0, 0.1],
            binary,
        }],
    };
    let plain = response(false).encode().unwrap();
    assert_eq!(plain.json_len, None);
    let v: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"model_name": "m", "model_version": "1", "id": "r9",
            "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [1, 3], "data": [1.5, -2.0, 0.1]}]})
    );
    let bin = response(true).encode().unwrap();
    let n = bin.json_len.unwrap();
    let head: serde_json::Value = serde_json::from_slice(&bin.body[..n]).unwrap();
    assert_eq!(
        head["outputs"][0],
        serde_json::json!({"name": "output__0", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}})
    );
    let values: Vec<f32> = bin.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values, vec![1.5, -2.0, 0.1]);

    // A masked log-probability (-inf) or a NaN: binary carries it, JSON says why it cannot.
    let with = |binary: bool, x: f32| InferResponse {
        outputs: vec![OutputTensor {
            data: vec![0.0, x, 1.0],
            ..response(binary).outputs[0].clone()
        }],
        ..response(binary)
    };
    for x in [f32::NEG_INFINITY, f32::NAN] {
        let err = with(false, x).encode().unwrap_err();
        assert_eq!(err.status, 500);
        assert!(
            err.message.contains("binary_data_output"),
            "{}",
            err.message
        );
        let bin = with(true, x).encode().unwrap();
        let n = bin.json_len.unwrap();
        let got = f32::from_le_bytes(bin.body[n + 4..n + 8].try_into().unwrap());
        assert!(got.to_bits() == x.to_bits(), "{got}");
    }
}

#[test]
fn every_bad_request_is_a_400_naming_the_problem() {
    let base = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 2, 2], "data": [1, 2, 3, 4]}]});
        f(&mut v);
        json(v)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "empty request body"),
        (b"{not json".to_vec(), "malformed JSON"),
        (b"[1,2]".to_vec(), "must be a JSON object"),
        (
            base(&|v| v["inputs"] = serde_json::json!([])),
            "takes 1 input",
        ),
        (
            base(&|v| v["inputs"][0]["name"] = "x".into()),
            "unknown input",
        ),
        (
            base(&|v| v["inputs"][0]["datatype"] = "INT64".into()),
            "datatype INT64",
        ),
        (
            base(&|v| v["inputs"][0]["shape"] = serde_json::json!([1, 3, 2])),
            "item shape",
        ),
        (
            base(&|v| v["inputs"][0]["shape"] = serde_json::json!([1, 2, 2, 1, 1])),
            "the model takes [batch",
        ),
        (
            base(&|v| v["inputs"][0]["shape"] = serde_json::json!([1, -2, 2])),
            "non-negative",
        ),
        (
            base(&|v| v["inputs"][0]["shape"] = serde_json::json!([0, 2, 2])),
            "0 items",
        ),
        (
            base(&|v| v["inputs"][0]["shape"] = serde_json::json!([5, 2, 2])),
            "more than the max batch size 4",
        ),
        (
            base(&|v| v["inputs"][0]["shape"] = serde_json::json!([4_000_000_000i64, 2, 2])),
            "absurdly large",
        ),
        (
            base(&|v| v["inputs"][0]["data"] = serde_json::json!([1, 2, 3])),
            "needs 4 elements, got 3",
        ),
        (
            base(&|v| v["inputs"][0]["data"] = serde_json::json!([1, "a", 3, 4])),
            "not a valid FP32",
        ),
        (
            base(&|v| v["inputs"][0]["data"] = serde_json::json!([1, 1e39, 3, 4])),
            "not a valid FP32",
        ),
        (
            base(&|v| {
                v["inputs"][0].as_object_mut().unwrap().remove("data");
            }),
            "no `data`",
        ),
        (base(&|v| v["id"] = 7.into()), "`id` must be a string"),
        (
            base(&|v| v["outputs"] = "x".into()),
            "`outputs` must be an array",
        ),
        (
            base(&|v| {
                v["outputs"] =
                    serde_json::json!([{"name": "output__0", "parameters": {"binary_data": "yes"}}])
            }),
            "binary_data must be true or false",
        ),
        (
            base(&|v| v["outputs"] = serde_json::json!([{"name": "output__0", "parameters": 3}])),
            "parameters must be a JSON object",
        ),
        (
            base(&|v| v["parameters"] = serde_json::json!({"binary_data_output": 1})),
            "binary_data_output must be true or false",
        ),
        (
            base(&|v| {
                v["outputs"] =
                    serde_json::json!([{"name": "output__0", "parameters": {"classification": 3}}])
            }),
            "classification extension is not supported",
        ),
    ];
    for (body, expected) in cases {
        let err = decode(&body, None, &sig()).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.contains(expected),
            "{:?}: expected {expected:?}, got {:?}",
            String::from_utf8_lossy(&body),
            err.message
        );
    }
}

/// Seeds of the fuzz corpus (`runtime/tests/fuzz-corpus/`): real requests the mutations start from.
fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "the fuzz corpus at {} is empty",
        dir.display()
    );
    seeds
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), split in proptest::option::of(0usize..600)) {
        let _ = decode(&body, split, &sig());
    }

    #[test]
    fn mutated_corpus_requests_never_panic_and_errors_are_4xx(seed in 0usize..64, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in any::<usize>()) {
        let seeds = corpus();
        let mut body = seeds[seed % seeds.len()].clone();
        for (pos, byte) in edits {
            if !body.is_empty() {
                let i = pos % body.len();
                body[i] = byte;
            }
        }
        body.truncate(cut % (body.len() + 1));
        if let Err(e) = decode(&body, None, &sig()) {
            prop_assert!((400..500).contains(&e.status));
            prop_assert!(!e.message.is_empty());
        }
    }
}

#[test]
fn data_is_read_into_the_element_type_as_parsed_and_never_past_the_shape() {
    let with_data = |datatype: &str, data: &str| {
        let sig = Signature {
            datatype: match datatype {
                "INT64" => Datatype::Int64,
                "INT32" => Datatype::Int32,
                "UINT8" => Datatype::Uint8,
                _ => Datatype::Fp32,
            },
            ..sig()
        };
        let body = format!(
            r#"{{"inputs": [{{"name": "input__0", "datatype": "{datatype}", "shape": [1, 2, 2], "data": {data}}}]}}"#
        );
        decode(body.as_bytes(), None, &sig)
    };
    let refused = |datatype: &str, data: &str, want: &str| {
        let e = with_data(datatype, data).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains(want), "{data}: {}", e.message);
    };
    assert_eq!(
        with_data("INT64", "[[-1, 2], [9007199254740993, 4]]")
            .unwrap()
            .data,
        TensorData::I64(vec![-1, 2, 9007199254740993, 4])
    );
    assert_eq!(
        with_data("UINT8", "[0, 255, 1, 2]").unwrap().data,
        TensorData::U8(vec![0, 255, 1, 2])
    );
    refused(
        "UINT8",
        "[0, 256, 1, 2]",
        "element 1 (256) is not a valid UINT8",
    );
    refused(
        "UINT8",
        "[0, -1, 1, 2]",
        "element 1 (-1) is not a valid UINT8",
    );
    refused(
        "INT32",
        "[0, 1.5, 1, 2]",
        "element 1 (1.5) is not a valid INT32",
    );
    refused("INT32", "[0, 1, 2147483648, 2]", "element 2 (2147483648)");
    refused("INT64", "[0, 1, 2, 18446744073709551615]", "element 3");
    refused(
        "FP32",
        "[1, null, 3, 4]",
        "element 1 (null) is not a valid FP32",
    );
    refused("FP32", r#"[1, 2, {"a": 1}, 4]"#, "element 2 (an object)");
    refused("FP32", "[1, 2, 3, true]", "element 3 (true)");
    refused("FP32", "[1, 2, 3, 1e39]", "is not a valid FP32");
    // Past the shape: counted, not kept, and named exactly.
    refused("FP32", "[1, 2, 3, 4, 5, 6]", "needs 4 elements, got 6");
    refused("FP32", "[]", "needs 4 elements, got 0");
    let deep = format!("{}1, 2, 3, 4{}", "[".repeat(17), "]".repeat(17));
    refused("FP32", &deep, "nested deeper than 16 levels");
    let deep_enough = format!("{}1, 2, 3, 4{}", "[".repeat(16), "]".repeat(16));
    assert!(with_data("FP32", &deep_enough).is_ok());
}

#[test]
fn the_request_s_fields_are_read_only_as_far_as_needed() {
    let body = |rest: &str| {
        format!(
            r#"{{"inputs": [{{"name": "input__0", "datatype": "FP32", "shape": [1, 2, 2], "data": [1, 2, 3, 4]}}]{rest}}}"#
        )
    };
    // Unknown fields are skipped; a field given twice is refused.
    assert!(
        decode(
            body(r#", "extra": {"deep": [1, 2]}"#).as_bytes(),
            None,
            &sig()
        )
        .is_ok()
    );
    let twice = decode(body(r#", "id": "a", "id": "b""#).as_bytes(), None, &sig()).unwrap_err();
    assert!(
        twice.message.contains("duplicate field `id`"),
        "{}",
        twice.message
    );
    // Many inputs are counted, not kept.
    let many = format!(r#"{{"inputs": [{}]}}"#, vec!["{}"; 100_000].join(","));
    let e = decode(many.as_bytes(), None, &sig()).unwrap_err();
    assert!(e.message.contains("got 100000"), "{}", e.message);
    // Fields other than `data` are read whole only up to 64 KiB.
    let long_id = body(&format!(r#", "id": "{}""#, "x".repeat(70_000)));
    let e = decode(long_id.as_bytes(), None, &sig()).unwrap_err();
    assert!(e.message.contains("`id` is 70002 bytes"), "{}", e.message);
    // A shape claiming far more than the text holds reserves room only for what it holds.
    let claimed = r#"{"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [4, 2, 2], "data": [1]}]}"#;
    let e = decode(claimed.as_bytes(), None, &sig()).unwrap_err();
    assert!(
        e.message.contains("needs 16 elements, got 1"),
        "{}",
        e.message
    );
}
