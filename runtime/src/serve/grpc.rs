//! The KServe v2 gRPC endpoint (`serve --grpc-port`): `inference.GRPCInferenceService` — ServerLive,
//! ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer, and Triton's ModelConfig
//! (perf_analyzer asks for it) — on tonic, routed by hand (the messages are `v2_grpc`'s). Same model, queue, readiness and metrics as the HTTP endpoint;
//! a failure's HTTP status becomes the gRPC code of the HTTP-to-gRPC mapping (400
//! INVALID_ARGUMENT, 404 NOT_FOUND, 429 and 503 UNAVAILABLE — retry with back-off — 500
//! INTERNAL), and is what `greenbatch_requests_total{code}` counts. A request message is decoded
//! here, not in tonic: a malformed one is INVALID_ARGUMENT (counted 400); one over the size limit
//! is refused by tonic's framing with OUT_OF_RANGE before it is read (counted 413).

use super::inference::{App, Failure, OUTPUT_NAME};
use super::v2::Signature;
use super::v2_grpc::{
    self, ModelConfig, ModelConfigRequest, ModelConfigResponse, ModelDynamicBatching,
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelOutputConfig, ModelReadyRequest, ModelReadyResponse, ModelTensorConfig, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse, TensorMetadata,
};
use bytes::{Buf, Bytes};
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

/// The gRPC service over one model.
#[derive(Clone)]
pub struct InferenceService {
    app: Arc<App>,
}

impl NamedService for InferenceService {
    const NAME: &'static str = v2_grpc::SERVICE;
}

/// A failure as a gRPC status.
fn status(f: Failure) -> Status {
    let code = match f.status {
        400 => Code::InvalidArgument,
        404 => Code::NotFound,
        429 | 503 => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, f.message)
}

impl InferenceService {
    pub fn new(app: Arc<App>) -> Self {
        InferenceService { app }
    }

    fn server_live(&self, _: ServerLiveRequest) -> Result<ServerLiveResponse, Status> {
        Ok(ServerLiveResponse {
            live: self.app.is_live(),
        })
    }

    fn server_ready(&self, _: ServerReadyRequest) -> Result<ServerReadyResponse, Status> {
        Ok(ServerReadyResponse {
            ready: self.app.is_ready(),
        })
    }

    fn model_ready(&self, r: ModelReadyRequest) -> Result<ModelReadyResponse, Status> {
        self.app
            .check_model(&r.name, Some(&r.version))
            .map_err(status)?;
        Ok(ModelReadyResponse {
            ready: self.app.is_ready(),
        })
    }

    fn server_metadata(&self, _: ServerMetadataRequest) -> Result<ServerMetadataResponse, Status> {
        Ok(ServerMetadataResponse {
            name: "greenbatch-runtime".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        })
    }

    fn model_metadata(&self, r: ModelMetadataRequest) -> Result<ModelMetadataResponse, Status> {
        self.app
            .check_model(&r.name, Some(&r.version))
            .map_err(status)?;
        let sig = &self.app.signature;
        let batched = |item: &[i64]| [&[-1i64][..], item].concat();
        Ok(ModelMetadataResponse {
            name: self.app.model_name.clone(),
            versions: vec!["1".into()],
            platform: "pytorch_libtorch".into(),
            inputs: vec![TensorMetadata {
                name: sig.input_name.clone(),
                datatype: sig.datatype.name().into(),
                shape: batched(&sig.item_shape),
            }],
            outputs: vec![TensorMetadata {
                name: OUTPUT_NAME.into(),
                datatype: "FP32".into(),
                shape: batched(&self.app.output_item_shape().map_err(status)?),
            }],
        })
    }

    fn model_config(&self, r: ModelConfigRequest) -> Result<ModelConfigResponse, Status> {
        self.app
            .check_model(&r.name, Some(&r.version))
            .map_err(status)?;
        let sig = &self.app.signature;
        Ok(ModelConfigResponse {
            config: Some(ModelConfig {
                name: self.app.model_name.clone(),
                platform: "pytorch_libtorch".into(),
                max_batch_size: i32::try_from(sig.max_batch).unwrap_or(i32::MAX),
                input: vec![ModelTensorConfig {
                    name: sig.input_name.clone(),
                    data_type: v2_grpc::triton_data_type(sig.datatype),
                    dims: sig.item_shape.clone(),
                }],
                output: vec![ModelOutputConfig {
                    name: OUTPUT_NAME.into(),
                    data_type: v2_grpc::TRITON_FP32,
                    dims: self.app.output_item_shape().map_err(status)?,
                }],
                dynamic_batching: Some(ModelDynamicBatching {
                    max_queue_delay_microseconds: u64::try_from(
                        self.app.shared.policy().max_queue_delay.as_micros(),
                    )
                    .unwrap_or(u64::MAX),
                }),
            }),
        })
    }

    /// `arrived`: when the request's headers came in, before its message was read — the moment
    /// the HTTP endpoint counts from, so both protocols' latencies mean the same.
    async fn model_infer(
        &self,
        r: ModelInferRequest,
        arrived: Instant,
    ) -> Result<ModelInferResponse, Status> {
        let result = self.model_infer_inner(r, arrived).await;
        self.app
            .record(result.as_ref().map_or_else(|f| f.status, |_| 200), arrived);
        result.map_err(status)
    }

    async fn model_infer_inner(
        &self,
        r: ModelInferRequest,
        arrived: Instant,
    ) -> Result<ModelInferResponse, Failure> {
        self.app
            .check_model(&r.model_name, Some(&r.model_version))?;
        self.app.admit()?;
        let request = v2_grpc::decode_infer(&r, &self.app.signature)?;
        let answer = self.app.infer(request, arrived).await?;
        Ok(v2_grpc::encode_infer(
            &self.app.model_name,
            answer.id,
            OUTPUT_NAME,
            answer.shape,
            &answer.data,
        ))
    }
}

/// Responses encoded by prost; requests handed over as the bytes received and decoded by
/// [`Unary`]: prost's decoder inside tonic would answer a malformed message with INTERNAL (a
/// server fault) before the service saw it, so it would be neither the client's error nor counted.
struct DecodeInService<Resp>(PhantomData<fn() -> Resp>);

impl<Resp: prost::Message + Send + 'static> Codec for DecodeInService<Resp> {
    type Encode = Resp;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<Resp>;
    type Decoder = ReceivedBytes;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ReceivedBytes
    }
}

/// A request message as received (tonic has checked its length against the limit).
struct ReceivedBytes;

impl Decoder for ReceivedBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// One unary method: the request decoded, handled, the response encoded. `counted` methods
/// (inference) count a request refused for its message in `greenbatch_requests_total`, as the
/// HTTP endpoint counts a body it cannot parse; `reached` says whether tonic handed it over;
/// `arrived` is when the request's headers came in (its latency counts from there, as HTTP's does).
struct Unary<Req, F> {
    service: InferenceService,
    handler: F,
    /// Checked on the message as received, before it is decoded.
    precheck: Precheck,
    counted: bool,
    arrived: Instant,
    reached: Arc<AtomicBool>,
    request: PhantomData<fn() -> Req>,
}

impl<Req, Resp, F, Fut> UnaryService<Bytes> for Unary<Req, F>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: Send + 'static,
    F: Fn(InferenceService, Req, Instant) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<tonic::Response<Resp>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        self.reached.store(true, Ordering::Relaxed);
        let (service, handler, precheck, counted, arrived) = (
            self.service.clone(),
            self.handler.clone(),
            self.precheck,
            self.counted,
            self.arrived,
        );
        Box::pin(async move {
            let message = request.into_inner();
            if let Err(f) = precheck(&message, &service.app.signature) {
                if counted {
                    service.app.record(f.status, arrived);
                }
                return Err(status(f));
            }
            let request = match Req::decode(message) {
                Ok(r) => r,
                Err(e) => {
                    if counted {
                        service.app.record(400, arrived);
                    }
                    let message = std::any::type_name::<Req>()
                        .rsplit("::")
                        .next()
                        .unwrap_or("request");
                    return Err(Status::invalid_argument(format!(
                        "the request is not a well-formed {message} (protobuf): {e}"
                    )));
                }
            };
            handler(service, request, arrived)
                .await
                .map(tonic::Response::new)
        })
    }
}

/// The HTTP status a request refused by tonic before the service counts as, as HTTP would answer
/// it: OUT_OF_RANGE (a message over the size limit) 413, UNIMPLEMENTED (a `grpc-encoding` this
/// server does not decode) 415; CANCELLED (the client went away mid-message) is no answer and
/// not counted; any other failure of the framing 400.
fn refused_before_the_service(response: &http::Response<Body>) -> Option<u16> {
    let code = response
        .headers()
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    match Code::from_i32(code) {
        Code::Ok | Code::Cancelled => None,
        Code::OutOfRange => Some(413),
        Code::Unimplemented => Some(415),
        _ => Some(400),
    }
}

/// What a method checks on a message before decoding it.
type Precheck = fn(&[u8], &Signature) -> Result<(), Failure>;

fn no_precheck(_: &[u8], _: &Signature) -> Result<(), Failure> {
    Ok(())
}

fn unary<Req, Resp, F, Fut>(
    service: InferenceService,
    request: http::Request<Body>,
    (counted, precheck): (bool, Precheck),
    handler: F,
) -> BoxFuture<http::Response<Body>, Infallible>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: Fn(InferenceService, Req, Instant) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let limit = service.app.max_body_bytes;
    Box::pin(async move {
        let arrived = Instant::now();
        let reached = Arc::new(AtomicBool::new(false));
        let method = Unary {
            service: service.clone(),
            handler,
            precheck,
            counted,
            arrived,
            reached: reached.clone(),
            request: PhantomData,
        };
        let mut grpc = Grpc::new(DecodeInService::<Resp>(PhantomData))
            .apply_max_message_size_config(Some(limit), Some(usize::MAX));
        let response = grpc.unary(method, request).await;
        if counted
            && !reached.load(Ordering::Relaxed)
            && let Some(code) = refused_before_the_service(&response)
        {
            service.app.record(code, arrived);
        }
        Ok(response)
    })
}

impl Service<http::Request<Body>> for InferenceService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.clone();
        let path = request.uri().path();
        let method = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(v2_grpc::SERVICE))
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(path)
            .to_string();
        match method.as_str() {
            "ServerLive" => unary(
                service,
                request,
                (false, no_precheck),
                |s, r, _| async move { s.server_live(r) },
            ),
            "ServerReady" => unary(
                service,
                request,
                (false, no_precheck),
                |s, r, _| async move { s.server_ready(r) },
            ),
            "ModelReady" => unary(
                service,
                request,
                (false, no_precheck),
                |s, r, _| async move { s.model_ready(r) },
            ),
            "ServerMetadata" => unary(
                service,
                request,
                (false, no_precheck),
                |s, r, _| async move { s.server_metadata(r) },
            ),
            "ModelMetadata" => unary(
                service,
                request,
                (false, no_precheck),
                |s, r, _| async move { s.model_metadata(r) },
            ),
            "ModelConfig" => unary(
                service,
                request,
                (false, no_precheck),
                |s, r, _| async move { s.model_config(r) },
            ),
            "ModelInfer" => unary(
                service,
                request,
                (true, v2_grpc::check_infer_bounds),
                |s, r, arrived| async move { s.model_infer(r, arrived).await },
            ),
            _ => Box::pin(async move {
                Ok(Status::unimplemented(format!(
                    "{method:?} is not a method this server implements (KServe v2: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer; Triton's ModelConfig)"
                ))
                .into_http())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_counts_from_its_headers_not_from_when_its_message_was_in() {
        // The HTTP endpoint counts a request's latency from its headers, before its body is
        // read; gRPC's must too, or a slow upload would vanish from one protocol's latencies.
        use crate::serve::batcher::BatchPolicy;
        use crate::serve::executor::Shared;
        use crate::serve::v2::Datatype;
        use std::time::Duration;
        use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;
        const DELAY: Duration = Duration::from_millis(300);
        let app = Arc::new(App {
            shared: Arc::new(Shared::new(
                BatchPolicy {
                    max_batch: 1,
                    max_queue_delay: Duration::from_millis(1),
                },
                4,
                crate::cli::PadBatches::Off,
            )),
            model_name: "m".into(),
            signature: Signature {
                input_name: "input__0".into(),
                datatype: Datatype::Fp32,
                item_shape: vec![1],
                max_batch: 1,
            },
            max_body_bytes: 1 << 20,
        });
        // The message (an empty ServerLiveRequest: a 5-byte gRPC frame) comes DELAY after the
        // headers.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, Infallible>>();
        tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            let _ = tx.send(Ok(Bytes::from_static(&[0, 0, 0, 0, 0])));
        });
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("/{}/ServerLive", v2_grpc::SERVICE))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Body::new(axum::body::Body::from_stream(
                UnboundedReceiverStream::new(rx),
            )))
            .unwrap();
        let seen = Arc::new(std::sync::Mutex::new(None));
        let seen_by = seen.clone();
        let sent = Instant::now();
        let response = unary(
            InferenceService::new(app),
            request,
            (false, no_precheck),
            move |_, _: ServerLiveRequest, arrived| {
                let seen = seen_by.clone();
                async move {
                    *seen.lock().unwrap() = Some(arrived);
                    Ok(ServerLiveResponse { live: true })
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        let arrived = seen.lock().unwrap().expect("the handler ran");
        assert!(
            arrived < sent + DELAY / 2,
            "counted from {:?} after the headers, not from them",
            arrived - sent
        );
    }

    fn refused_with(code: Option<&str>) -> Option<u16> {
        let mut response = http::Response::new(Body::empty());
        if let Some(code) = code {
            response
                .headers_mut()
                .insert("grpc-status", code.parse().expect("a header value"));
        }
        refused_before_the_service(&response)
    }

    #[test]
    fn a_request_tonic_refused_counts_as_http_would_answer_it() {
        assert_eq!(refused_with(Some("11")), Some(413)); // OUT_OF_RANGE
        assert_eq!(refused_with(Some("12")), Some(415)); // UNIMPLEMENTED
        assert_eq!(refused_with(Some("13")), Some(400)); // INTERNAL
        assert_eq!(refused_with(Some("3")), Some(400)); // INVALID_ARGUMENT
        assert_eq!(refused_with(Some("1")), None); // CANCELLED: no answer
        assert_eq!(refused_with(Some("0")), None);
        // No status in the headers: an answer in the body's trailers, not a refusal.
        assert_eq!(refused_with(None), None);
        assert_eq!(refused_with(Some("x")), None);
    }
}
