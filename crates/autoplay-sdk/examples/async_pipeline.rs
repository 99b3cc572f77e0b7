//! Async RAG pipeline: embed each batch and upsert it; replace raw history with the
//! session summaries. The embedding and vector store here are stand-ins for your
//! async clients (OpenAI, Pinecone, pgvector, ...).
//!
//! ```sh
//! cargo run --example async_pipeline -- http://127.0.0.1:8080/stream/demo <token>
//! ```

use std::sync::Arc;

use autoplay_sdk::AsyncConnectorClient;
use autoplay_sdk::rag::{AsyncRagPipeline, RagMetadata};

/// Stand-in for an async embedding API: a tiny bag-of-bytes vector.
async fn embed(text: String) -> Result<Vec<f32>, String> {
    let mut v = vec![0f32; 8];
    for (i, b) in text.bytes().enumerate() {
        v[i % 8] += b as f32 / 255.0;
    }
    Ok(v)
}

/// Stand-in for an async vector-store upsert.
async fn upsert(id: String, vector: Vec<f32>, meta: RagMetadata) -> Result<(), String> {
    println!("upsert id={id} kind={} dims={}", meta.kind, vector.len());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), autoplay_sdk::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/stream/demo".into());
    let token = args.next().unwrap_or_default();

    let pipeline = Arc::new(AsyncRagPipeline::new(embed, upsert));
    let (actions, summaries) = (pipeline.clone(), pipeline.clone());
    let client = AsyncConnectorClient::builder(url)
        .token(token)
        .on_actions(move |payload| {
            let pipeline = actions.clone();
            async move { pipeline.on_actions(&payload).await }
        })
        .on_summary(move |payload| {
            let pipeline = summaries.clone();
            async move { pipeline.on_summary(&payload).await }
        })
        .build()?;

    // Ctrl-C stops the client; queued events are still handled.
    let stop = client.stop_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.stop();
    });
    client.run().await
}
