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
