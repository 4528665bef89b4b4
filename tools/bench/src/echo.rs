//! The bare tonic echo server: no auth, no database, no tracing layers, so its
//! throughput is what unary gRPC itself costs on this machine.

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

pub mod pb {
    tonic::include_proto!("retention.bench.v1");
}

pub use pb::echo_service_client::EchoServiceClient;
use pb::echo_service_server::{EchoService, EchoServiceServer};
use pb::{EchoReply, EchoRequest};

/// Replies with `reply_bytes` bytes: as much work per call as tonic must do to
/// encode a reply of that size, and nothing else.
#[derive(Clone, Default)]
pub struct Echo;

/// Larger requests are capped, so a caller cannot make the server allocate at will.
const MAX_REPLY: usize = 1 << 20;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let n = (req.get_ref().reply_bytes as usize).min(MAX_REPLY);
        Ok(Response::new(EchoReply {
            payload: vec![b'x'; n],
        }))
    }
}

/// Serves the echo service on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(EchoServiceServer::new(Echo))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
