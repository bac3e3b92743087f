//! What answers the emulator's requests: the embedded engine or the instant generator.

use std::sync::Arc;

use async_trait::async_trait;
use contract::ChunkStream;

#[async_trait]
pub trait Generator: Send + Sync + 'static {
    async fn generate(
        &self,
        req: contract::GenerateRequest,
    ) -> Result<ChunkStream, contract::Error>;
    async fn embed(
        &self,
        req: contract::EmbedRequest,
    ) -> Result<contract::EmbedResponse, contract::Error>;
}

#[async_trait]
impl Generator for engine::ModelPool {
    async fn generate(
        &self,
        req: contract::GenerateRequest,
    ) -> Result<ChunkStream, contract::Error> {
        engine_contract::generate(self, req, "bedrock").await
    }

    async fn embed(
        &self,
        req: contract::EmbedRequest,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        engine_contract::embed(self, req, "bedrock").await
    }
}

#[async_trait]
impl Generator for instant::InstantGenerator {
    async fn generate(
        &self,
        req: contract::GenerateRequest,
    ) -> Result<ChunkStream, contract::Error> {
        instant::InstantGenerator::generate(self, req)
    }

    async fn embed(
        &self,
        req: contract::EmbedRequest,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        instant::embed::embed(&req)
    }
}

#[async_trait]
impl<G: Generator + ?Sized> Generator for Arc<G> {
    async fn generate(
        &self,
        req: contract::GenerateRequest,
    ) -> Result<ChunkStream, contract::Error> {
        (**self).generate(req).await
    }

    async fn embed(
        &self,
        req: contract::EmbedRequest,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        (**self).embed(req).await
    }
}
